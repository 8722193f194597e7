/*
 * The compiled twin of perisai/classify/jsonfields.py (py_locate, PyHits): the same contract,
 * held to it by tests/test_classify_json_fields.py. Read the Python first; this file only
 * makes the per-hit step cheap. Every index is checked against the line it belongs to, and
 * nothing here writes outside the arrays it owns.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__) && defined(__GNUC__)
#include <emmintrin.h>
#endif

#define MAX_VALUE_BYTES (64 * 1024)

/* ----- Hits: hyperscan's match callback, storing (trigger id, end) ----------------------- */

typedef struct {
    long long trigger;
    long long end;
} Hit;

typedef struct {
    PyObject_HEAD
    Hit *items;
    Py_ssize_t size;
    Py_ssize_t capacity;
} HitsObject;

static void Hits_dealloc(HitsObject *self) {
    PyMem_Free(self->items);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Hits_call(HitsObject *self, PyObject *args, PyObject *Py_UNUSED(kwargs)) {
    if (!PyTuple_Check(args) || PyTuple_GET_SIZE(args) < 3) {
        PyErr_SetString(PyExc_TypeError, "Hits expects (id, from, to, flags, context)");
        return NULL;
    }
    long long trigger = PyLong_AsLongLong(PyTuple_GET_ITEM(args, 0));
    long long end = PyLong_AsLongLong(PyTuple_GET_ITEM(args, 2));
    if ((trigger == -1 || end == -1) && PyErr_Occurred()) {
        return NULL;
    }
    if (self->size == self->capacity) {
        Py_ssize_t capacity = self->capacity ? self->capacity * 2 : 1024;
        Hit *items = PyMem_Realloc(self->items, (size_t)capacity * sizeof(Hit));
        if (items == NULL) {
            return PyErr_NoMemory();
        }
        self->items = items;
        self->capacity = capacity;
    }
    self->items[self->size].trigger = trigger;
    self->items[self->size].end = end;
    self->size++;
    Py_RETURN_NONE;
}

static PyObject *Hits_clear(HitsObject *self, PyObject *Py_UNUSED(ignored)) {
    self->size = 0;
    Py_RETURN_NONE;
}

static PyObject *Hits_pairs(HitsObject *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *list = PyList_New(self->size);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->size; i++) {
        PyObject *pair = Py_BuildValue("(LL)", self->items[i].trigger, self->items[i].end);
        if (pair == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, pair);
    }
    return list;
}

static Py_ssize_t Hits_len(HitsObject *self) { return self->size; }

static PyMethodDef Hits_methods[] = {
    {"clear", (PyCFunction)Hits_clear, METH_NOARGS, "Forget every hit."},
    {"pairs", (PyCFunction)Hits_pairs, METH_NOARGS, "The hits as (trigger, end) pairs."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Hits_as_sequence = {
    .sq_length = (lenfunc)Hits_len,
};

static PyTypeObject HitsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "perisai.classify._jsonfields.Hits",
    .tp_doc = "Collects (trigger id, end offset) from hyperscan's match callback.",
    .tp_basicsize = sizeof(HitsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Hits_dealloc,
    .tp_call = (ternaryfunc)Hits_call,
    .tp_methods = Hits_methods,
    .tp_as_sequence = &Hits_as_sequence,
};

/* ----- locate ----------------------------------------------------------------------------- */

typedef struct {
    Py_ssize_t at;
    long long trigger;
    int is_key;
} Point;

static int point_order(const void *a, const void *b) {
    const Point *x = a, *y = b;
    if (x->at != y->at) {
        return x->at < y->at ? -1 : 1;
    }
    return x->is_key - y->is_key;
}

/* Hyperscan reports hits in order of their ends, so the points come nearly sorted: an
 * insertion sort is linear then; past a few moves per point, qsort takes over. */
static void sort_points(Point *points, Py_ssize_t n) {
    Py_ssize_t moves = 0;
    for (Py_ssize_t i = 1; i < n; i++) {
        Point point = points[i];
        Py_ssize_t j = i;
        while (j > 0 && point_order(&points[j - 1], &point) > 0) {
            points[j] = points[j - 1];
            j--;
            if (++moves > 4 * n) {
                points[j] = point;
                qsort(points, (size_t)n, sizeof(Point), point_order);
                return;
            }
        }
        points[j] = point;
    }
}

typedef struct {
    Py_ssize_t key_start, key_end, value_start, value_end, field_end;
} Field;

enum { FIELD_NONE = 0, FIELD_OK = 1, FIELD_SLOW = 2 };

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

static int is_number(char c) {
    return (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E';
}

static Py_ssize_t skip(const char *d, Py_ssize_t at, Py_ssize_t end) {
    while (at < end && is_space(d[at])) {
        at++;
    }
    return at;
}

static Py_ssize_t skip_back(const char *d, Py_ssize_t at, Py_ssize_t start) {
    while (at >= start && is_space(d[at])) {
        at--;
    }
    return at;
}

static Py_ssize_t find_char(const char *d, char c, Py_ssize_t from, Py_ssize_t to) {
    if (from >= to) {
        return -1;
    }
    const char *hit = memchr(d + from, c, (size_t)(to - from));
    return hit ? (Py_ssize_t)(hit - d) : -1;
}

static Py_ssize_t rfind_char(const char *d, char c, Py_ssize_t from, Py_ssize_t to) {
    if (from >= to) {
        return -1;
    }
#ifdef __GLIBC__
    const char *hit = memrchr(d + from, c, (size_t)(to - from)); /* vectorised in glibc */
    return hit ? (Py_ssize_t)(hit - d) : -1;
#else
    for (Py_ssize_t i = to - 1; i >= from; i--) {
        if (d[i] == c) {
            return i;
        }
    }
    return -1;
#endif
}

/* How many `c` in d[from:to], in one pass (one memchr per quote cost more, quotes being a
 * few bytes apart in JSON). */
static Py_ssize_t count_char(const char *d, char c, Py_ssize_t from, Py_ssize_t to) {
    Py_ssize_t count = 0, i = from;
#if defined(__SSE2__) && defined(__GNUC__)
    const __m128i needle = _mm_set1_epi8(c); /* sixteen bytes at a time */
    for (; i + 16 <= to; i += 16) {
        __m128i chunk = _mm_loadu_si128((const __m128i *)(d + i));
        count += __builtin_popcount((unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(chunk, needle)));
    }
#endif
    for (; i < to; i++) {
        count += d[i] == c;
    }
    return count;
}

static int readable(const char *d, Py_ssize_t start, Py_ssize_t end) {
    Py_ssize_t first = skip(d, start, end);
    Py_ssize_t last = skip_back(d, end - 1, start);
    if (first >= end || last < first || d[first] != '{' || d[last] != '}') {
        return 0;
    }
    return memchr(d + start, '\\', (size_t)(end - start)) == NULL;
}

static int string_field(const char *d, Py_ssize_t key_close, Py_ssize_t value_start,
                        Py_ssize_t value_end, Py_ssize_t line_start, Field *field) {
    Py_ssize_t key_open = rfind_char(d, '"', line_start, key_close);
    if (key_open < 0 || value_end - value_start > MAX_VALUE_BYTES) {
        return FIELD_SLOW;
    }
    Py_ssize_t head = skip(d, value_start, value_end);
    if (head < value_end && (d[head] == '{' || d[head] == '[')) {
        return FIELD_SLOW;
    }
    field->key_start = key_open + 1;
    field->key_end = key_close;
    field->value_start = value_start;
    field->value_end = value_end;
    field->field_end = value_end + 1;
    return FIELD_OK;
}

static int value_field(const char *d, Py_ssize_t at, Py_ssize_t line_start, Py_ssize_t line_end,
                       Py_ssize_t quotes, Py_ssize_t last_quote, Field *field) {
    if (quotes % 2 == 0) {
        return FIELD_SLOW;
    }
    Py_ssize_t value_start = last_quote + 1;
    Py_ssize_t value_end = find_char(d, '"', at, line_end);
    if (value_end < 0) {
        return FIELD_SLOW;
    }
    Py_ssize_t after = skip(d, value_end + 1, line_end);
    if (after < line_end && d[after] == ':') {
        return FIELD_NONE;
    }
    Py_ssize_t colon = skip_back(d, last_quote - 1, line_start);
    if (colon < line_start || d[colon] != ':') {
        return FIELD_SLOW;
    }
    Py_ssize_t key_close = skip_back(d, colon - 1, line_start);
    if (key_close < line_start || d[key_close] != '"') {
        return FIELD_SLOW;
    }
    return string_field(d, key_close, value_start, value_end, line_start, field);
}

static int key_field(const char *d, Py_ssize_t at, Py_ssize_t line_start, Py_ssize_t line_end,
                     Py_ssize_t quotes, Py_ssize_t last_quote, Field *field) {
    if (quotes % 2 || last_quote < 0 || skip(d, last_quote + 1, at) != at) {
        return FIELD_SLOW;
    }
    Py_ssize_t key_close = last_quote;
    Py_ssize_t value_at = skip(d, at + 1, line_end);
    if (value_at >= line_end) {
        return FIELD_SLOW;
    }
    char first = d[value_at];
    if (first == '"') {
        Py_ssize_t value_end = find_char(d, '"', value_at + 1, line_end);
        if (value_end < 0) {
            return FIELD_SLOW;
        }
        return string_field(d, key_close, value_at + 1, value_end, line_start, field);
    }
    if (is_number(first)) {
        Py_ssize_t value_end = value_at;
        while (value_end < line_end && is_number(d[value_end])) {
            value_end++;
        }
        Py_ssize_t key_open = rfind_char(d, '"', line_start, key_close);
        if (key_open < 0) {
            return FIELD_SLOW;
        }
        field->key_start = key_open + 1;
        field->key_end = key_close;
        field->value_start = value_at;
        field->value_end = value_end;
        field->field_end = value_end;
        return FIELD_OK;
    }
    if (first == '[') {
        return FIELD_SLOW;
    }
    return FIELD_NONE;
}

/* ----- templates: fields answered whatever the values of their digits (template_of) ------ */

#define TEMPLATED 2
#define TEMPLATE_MAX_DIGIT_GROUP 8

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* The first point at or after `at` (points are sorted by position). */
static Py_ssize_t first_point_at(const Point *points, Py_ssize_t n, Py_ssize_t at) {
    Py_ssize_t low = 0, high = n;
    while (low < high) {
        Py_ssize_t middle = low + (high - low) / 2;
        if (points[middle].at < at) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return low;
}

static Py_ssize_t longest_digit_group(const char *d, Py_ssize_t start, Py_ssize_t end) {
    Py_ssize_t longest = 0, run = 0;
    for (Py_ssize_t at = start; at < end; at++) {
        if (is_digit(d[at])) {
            run++;
            if (run > longest) {
                longest = run;
            }
        } else {
            int joins = (d[at] == ' ' || d[at] == '-') && at + 1 < end && is_digit(d[at + 1]);
            if (!(joins && run)) {
                run = 0;
            }
        }
    }
    return longest;
}

/* _templated in jsonfields.py: a string value, every non-key hit in the field the template
 * trigger's, one of them inside the value, and no long digit group in it. */
static int templated(const char *d, const Point *points, Py_ssize_t n, const Field *field,
                     long long template_trigger) {
    if (template_trigger < 0 || field->field_end != field->value_end + 1) {
        return 0;
    }
    int in_value = 0;
    Py_ssize_t last = first_point_at(points, n, field->field_end);
    for (Py_ssize_t j = first_point_at(points, n, field->key_start - 1); j < last; j++) {
        if (points[j].is_key) {
            continue;
        }
        if (points[j].trigger != template_trigger) {
            return 0;
        }
        in_value |= field->value_start <= points[j].at && points[j].at < field->value_end;
    }
    return in_value && longest_digit_group(d, field->value_start, field->value_end) <=
                           TEMPLATE_MAX_DIGIT_GROUP;
}

/* template_of in jsonfields.py: the field's bytes, each ASCII digit of the value read as 0. */
static PyObject *template_of(const char *d, const Field *field) {
    Py_ssize_t start = field->key_start - 1;
    PyObject *template = PyBytes_FromStringAndSize(d + start, field->field_end - start);
    if (template == NULL) {
        return NULL;
    }
    char *bytes = PyBytes_AS_STRING(template);
    for (Py_ssize_t at = field->value_start; at < field->value_end; at++) {
        if (is_digit(bytes[at - start])) {
            bytes[at - start] = '0';
        }
    }
    return template;
}

/* Append a new Python object to a list, stealing the reference; -1 on error. */
static int append_steal(PyObject *list, PyObject *item) {
    if (item == NULL) {
        return -1;
    }
    int failed = PyList_Append(list, item);
    Py_DECREF(item);
    return failed;
}

/* A line found unreadable late takes back what it yielded before: keep, in each list, only
 * the entries whose line is not in `fallback` (`values` NULL: not kept at all). */
static int drop_slow_lines(PyObject *fallback, PyObject **lines, PyObject **values,
                           PyObject **results, PyObject **missing) {
    PyObject *slow = PySet_New(fallback);
    PyObject *kept[3] = {PyList_New(0), PyList_New(0), PyList_New(0)};
    PyObject *kept_missing = PyList_New(0);
    int status = -1;
    if (slow == NULL || kept[0] == NULL || kept[1] == NULL || kept[2] == NULL ||
        kept_missing == NULL) {
        goto out;
    }
    PyObject *sources[3] = {*lines, values ? *values : NULL, *results};
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(*lines); i++) {
        int contained = PySet_Contains(slow, PyList_GET_ITEM(*lines, i));
        if (contained < 0) {
            goto out;
        }
        for (int k = 0; !contained && k < 3; k++) {
            if (sources[k] != NULL && PyList_Append(kept[k], PyList_GET_ITEM(sources[k], i)) < 0) {
                goto out;
            }
        }
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(*missing); i++) {
        PyObject *item = PyList_GET_ITEM(*missing, i);
        int contained = PySet_Contains(slow, PyTuple_GET_ITEM(item, 0));
        if (contained < 0 || (!contained && PyList_Append(kept_missing, item) < 0)) {
            goto out;
        }
    }
    Py_SETREF(*lines, kept[0]);
    if (values != NULL) {
        Py_SETREF(*values, kept[1]);
        kept[1] = NULL;
    }
    Py_SETREF(*results, kept[2]);
    Py_SETREF(*missing, kept_missing);
    kept[0] = kept[2] = kept_missing = NULL;
    status = 0;
out:
    Py_XDECREF(slow);
    Py_XDECREF(kept[0]);
    Py_XDECREF(kept[1]);
    Py_XDECREF(kept[2]);
    Py_XDECREF(kept_missing);
    return status;
}

/* A tuple of ints (Py_BuildValue parses its format string on every call). */
static PyObject *tuple_of(const Py_ssize_t *items, Py_ssize_t n) {
    PyObject *tuple = PyTuple_New(n);
    if (tuple == NULL) {
        return NULL;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *item = PyLong_FromSsize_t(items[k]);
        if (item == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
        PyTuple_SET_ITEM(tuple, k, item);
    }
    return tuple;
}

/* What the cache says `key` holds (a new reference), or NULL: from `young`, else from `old`,
 * whence it moves up to `young`, so fields in use outlive the generation that drops `old`. */
static PyObject *cache_get(PyObject *young, PyObject *old, PyObject *key) {
    PyObject *cached = PyDict_GetItemWithError(young, key); /* borrowed */
    if (cached != NULL) {
        Py_INCREF(cached);
        return cached;
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    cached = PyDict_GetItemWithError(old, key);
    if (cached == NULL) {
        return NULL;
    }
    Py_INCREF(cached);
    if (PyDict_SetItem(young, key, cached) < 0 || PyDict_DelItem(old, key) < 0) {
        Py_DECREF(cached);
        return NULL;
    }
    return cached;
}

/* Set the value-hit flag (the last item) of the last tuple in `missing`. */
static int mark_value_hit(PyObject *missing) {
    Py_ssize_t last = PyList_GET_SIZE(missing) - 1;
    if (last < 0) {
        return 0;
    }
    PyObject *old = PyList_GET_ITEM(missing, last);
    Py_ssize_t n = PyTuple_GET_SIZE(old);
    PyObject *marked = PyTuple_New(n);
    if (marked == NULL) {
        return -1;
    }
    for (Py_ssize_t k = 0; k < n - 1; k++) {
        PyObject *item = PyTuple_GET_ITEM(old, k);
        Py_INCREF(item);
        PyTuple_SET_ITEM(marked, k, item);
    }
    PyTuple_SET_ITEM(marked, n - 1, PyLong_FromLong(1));
    if (PyTuple_GET_ITEM(marked, n - 1) == NULL) {
        Py_DECREF(marked);
        return -1;
    }
    return PyList_SetItem(missing, last, marked); /* steals `marked`, drops `old` */
}

static PyObject *locate(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer view;
    PyObject *hits_object, *young, *old, *templates;
    Py_ssize_t first_key_id, max_cached;
    long long template_trigger;
    int want_values;
    if (!PyArg_ParseTuple(args, "y*O!nO!O!npO!L", &view, &HitsType, &hits_object,
                          &first_key_id, &PyDict_Type, &young, &PyDict_Type, &old, &max_cached,
                          &want_values, &PyDict_Type, &templates, &template_trigger)) {
        return NULL;
    }
    HitsObject *hits = (HitsObject *)hits_object;
    const char *d = view.buf;
    Py_ssize_t size = view.len;
    /* found: three parallel lists (line starts, value starts, cached results), not tuples:
     * nothing the cyclic GC tracks is made per field */
    PyObject *lines = PyList_New(0), *values = PyList_New(0), *results = PyList_New(0);
    PyObject *missing = PyList_New(0), *fallback = PyList_New(0);
    PyObject *result = NULL;
    PyObject *line_object = NULL; /* the current line's start as a Python int, made once */
    Point *points = NULL;
    if (lines == NULL || values == NULL || results == NULL || missing == NULL || fallback == NULL) {
        goto done;
    }
    if (size == 0 || hits->size == 0) {
        goto finish;
    }
    points = PyMem_Malloc((size_t)hits->size * sizeof(Point));
    if (points == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < hits->size; i++) {
        long long end = hits->items[i].end;
        int is_key = hits->items[i].trigger >= first_key_id;
        long long at;
        if (is_key) {
            at = end - 1;
        } else if (end >= 2 && end <= size && d[end - 1] == '"') {
            at = end - 2;
        } else {
            at = end - 1;
        }
        if (at < 0) {
            at = 0;
        }
        if (at > size - 1) {
            at = size - 1;
        }
        points[i].at = (Py_ssize_t)at;
        points[i].trigger = hits->items[i].trigger;
        points[i].is_key = is_key;
    }
    sort_points(points, hits->size);

    Py_ssize_t line_start = -1, line_end = -1, cursor = 0, quotes = 0, last_quote = -1;
    Py_ssize_t last_value = -1;
    int pending_key_only = 0; /* the last entry of `missing` was found by its key alone */
    int line_ok = 0, any_late = 0;
    for (Py_ssize_t i = 0; i < hits->size; i++) {
        Py_ssize_t at = points[i].at;
        if (at > line_end) { /* a point on a line's newline is that line's, as in Python */
            line_start = rfind_char(d, '\n', 0, at) + 1;
            line_end = find_char(d, '\n', at, size);
            if (line_end < 0) {
                line_end = size;
            }
            line_ok = readable(d, line_start, line_end);
            Py_CLEAR(line_object);
            cursor = line_start;
            quotes = 0;
            last_quote = -1;
            if (!line_ok && append_steal(fallback, PyLong_FromSsize_t(line_start)) < 0) {
                goto done;
            }
        }
        if (!line_ok) {
            continue;
        }
        if (cursor < at) { /* the quotes before `at`: their number and the last one */
            Py_ssize_t counted = count_char(d, '"', cursor, at);
            if (counted) {
                quotes += counted;
                last_quote = rfind_char(d, '"', cursor, at);
            }
            cursor = at;
        }
        if (!points[i].is_key && quotes % 2 && last_quote + 1 == last_value) {
            /* another hit in the value just read: do not walk it again, but a field found by
             * its key alone and still to classify is now known to hold a value hit too */
            if (pending_key_only && mark_value_hit(missing) < 0) {
                goto done;
            }
            pending_key_only = 0;
            continue;
        }
        Field field;
        int kind = points[i].is_key
                       ? key_field(d, at, line_start, line_end, quotes, last_quote, &field)
                       : value_field(d, at, line_start, line_end, quotes, last_quote, &field);
        if (kind == FIELD_NONE) {
            continue;
        }
        if (kind == FIELD_SLOW) {
            line_ok = 0;
            any_late = 1;
            if (append_steal(fallback, PyLong_FromSsize_t(line_start)) < 0) {
                goto done;
            }
            continue;
        }
        if (field.value_start == last_value) {
            continue;
        }
        last_value = field.value_start;
        pending_key_only = 0;
        int seen_as = !points[i].is_key;
        if (field.field_end - field.key_start + 1 <= max_cached) {
            PyObject *key = PyBytes_FromStringAndSize(d + field.key_start - 1,
                                                      field.field_end - field.key_start + 1);
            if (key == NULL) {
                goto done;
            }
            PyObject *cached = cache_get(young, old, key);
            Py_DECREF(key);
            if (cached == NULL && PyErr_Occurred()) {
                goto done;
            }
            if (cached == NULL && templated(d, points, hits->size, &field, template_trigger)) {
                seen_as = TEMPLATED;
                PyObject *template = template_of(d, &field);
                if (template == NULL) {
                    goto done;
                }
                cached = PyDict_GetItemWithError(templates, template); /* borrowed */
                Py_XINCREF(cached);
                Py_DECREF(template);
                if (cached == NULL && PyErr_Occurred()) {
                    goto done;
                }
            }
            if (cached != NULL) {
                if (cached != Py_None && line_object == NULL) {
                    line_object = PyLong_FromSsize_t(line_start); /* one per line */
                }
                int failed = cached != Py_None && /* None: known to hold nothing */
                             (line_object == NULL || PyList_Append(lines, line_object) < 0 ||
                              (want_values &&
                               append_steal(values, PyLong_FromSsize_t(field.value_start)) < 0) ||
                              PyList_Append(results, cached) < 0);
                Py_DECREF(cached);
                if (failed) {
                    goto done;
                }
                continue;
            }
        }
        Py_ssize_t entry[7] = {line_start,        field.key_start, field.key_end,
                               field.value_start, field.value_end, field.field_end,
                               seen_as};
        if (append_steal(missing, tuple_of(entry, 7)) < 0) {
            goto done;
        }
        pending_key_only = seen_as == 0;
    }
    if (any_late &&
        drop_slow_lines(fallback, &lines, want_values ? &values : NULL, &results, &missing) < 0) {
        goto done;
    }
finish:
    result = PyTuple_Pack(5, lines, values, results, missing, fallback);
done:
    Py_XDECREF(line_object);
    PyMem_Free(points);
    Py_XDECREF(lines);
    Py_XDECREF(values);
    Py_XDECREF(results);
    Py_XDECREF(missing);
    Py_XDECREF(fallback);
    PyBuffer_Release(&view);
    return result;
}

static int is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* The number of lines in `data` that are not blank (what bytes.strip() would leave empty). */
static PyObject *count_records(PyObject *Py_UNUSED(module), PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const char *d = view.buf;
    Py_ssize_t size = view.len, at = 0, records = 0;
    while (at < size) {
        Py_ssize_t end = find_char(d, '\n', at, size);
        if (end < 0) {
            end = size;
        }
        for (Py_ssize_t i = at; i < end; i++) {
            if (!is_blank(d[i])) {
                records++;
                break;
            }
        }
        at = end + 1;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(records);
}

/* ----- logfmt lines as JSON objects: the twin of perisai/classify/logfmt.py_as_json ------- */

#define LOGFMT_MAX_PAIRS 256

static int is_key_start(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_key_char(char c) {
    return is_key_start(c) || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

static int is_logfmt_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

typedef struct {
    Py_ssize_t key_start, key_end, value_start, value_end, end;
} Pair;

/* The key=value pair at `at` in d[..size), as logfmt.py's _pair reads it; 0 when none. */
static int logfmt_pair(const char *d, Py_ssize_t at, Py_ssize_t size, Pair *pair) {
    if (!is_key_start(d[at])) {
        return 0;
    }
    Py_ssize_t key_end = at + 1;
    while (key_end < size && is_key_char(d[key_end])) {
        key_end++;
    }
    if (key_end >= size || d[key_end] != '=') {
        return 0;
    }
    Py_ssize_t value = key_end + 1;
    pair->key_start = at;
    pair->key_end = key_end;
    if (value < size && d[value] == '"') {
        Py_ssize_t end = value + 1;
        while (end < size && d[end] != '"') {
            end += d[end] == '\\' ? 2 : 1;
        }
        if (end >= size || (end + 1 < size && !is_logfmt_blank(d[end + 1]))) {
            return 0;
        }
        pair->value_start = value + 1;
        pair->value_end = end;
        pair->end = end + 1;
        return 1;
    }
    Py_ssize_t end = value;
    while (end < size && !is_logfmt_blank(d[end])) {
        if (d[end] == '"') {
            return 0;
        }
        end++;
    }
    pair->value_start = value;
    pair->value_end = end;
    pair->end = end;
    return 1;
}

static char *put(char *out, const char *from, Py_ssize_t n) {
    memcpy(out, from, (size_t)n);
    return out + n;
}

/* One line d[0..size) written at `out` as a JSON object, or as it is; returns the new end. */
static char *logfmt_line(const char *d, Py_ssize_t size, char *out, Pair *pairs) {
    Py_ssize_t count = 0, at = 0, prefix_start = -1, prefix_end = -1;
    for (;;) {
        while (at < size && is_logfmt_blank(d[at])) {
            at++;
        }
        if (at >= size) {
            break;
        }
        Pair pair;
        if (!logfmt_pair(d, at, size, &pair)) {
            if (count) {
                return put(out, d, size);
            }
            if (prefix_start < 0) {
                prefix_start = at;
            }
            while (at < size && !is_logfmt_blank(d[at])) {
                at++;
            }
            prefix_end = at;
            continue;
        }
        if (count == LOGFMT_MAX_PAIRS) {
            return put(out, d, size);
        }
        pairs[count++] = pair;
        at = pair.end;
    }
    if (!count) {
        return put(out, d, size);
    }
    *out++ = '{';
    if (prefix_start >= 0) {
        out = put(out, "\"_\": \"", 6);
        for (Py_ssize_t i = prefix_start; i < prefix_end; i++) {
            if (d[i] == '\\' || d[i] == '"') {
                *out++ = '\\';
            }
            *out++ = d[i];
        }
        *out++ = '"';
    }
    for (Py_ssize_t n = 0; n < count; n++) {
        if (n || prefix_start >= 0) {
            out = put(out, ", ", 2);
        }
        *out++ = '"';
        out = put(out, d + pairs[n].key_start, pairs[n].key_end - pairs[n].key_start);
        out = put(out, "\": \"", 4);
        out = put(out, d + pairs[n].value_start, pairs[n].value_end - pairs[n].value_start);
        *out++ = '"';
    }
    *out++ = '}';
    return out;
}

static PyObject *logfmt_json(PyObject *Py_UNUSED(module), PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const char *d = view.buf;
    Py_ssize_t size = view.len;
    /* a line of n bytes comes out at most 5n + 16 long (its shortest pair "a=" becomes
     * "a": "", a prefix byte doubles at worst, the braces and "_" come once); the buffer
     * grows to hold each line's worst case before it is written */
    if (size > (PY_SSIZE_T_MAX - 64) / 6) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    Py_ssize_t capacity = 2 * size + 64;
    PyObject *result = PyBytes_FromStringAndSize(NULL, capacity);
    Pair *pairs = PyMem_Malloc(LOGFMT_MAX_PAIRS * sizeof(Pair));
    if (result == NULL || pairs == NULL) {
        Py_XDECREF(result);
        PyMem_Free(pairs);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    char *start = PyBytes_AS_STRING(result), *out = start;
    Py_ssize_t at = 0;
    for (;;) {
        Py_ssize_t end = find_char(d, '\n', at, size);
        Py_ssize_t stop = end < 0 ? size : end;
        Py_ssize_t used = out - start, worst = 5 * (stop - at) + 17;
        if (used + worst > capacity) {
            capacity = 2 * (used + worst);
            if (_PyBytes_Resize(&result, capacity) < 0) {
                PyMem_Free(pairs);
                PyBuffer_Release(&view);
                return NULL;
            }
            start = PyBytes_AS_STRING(result);
            out = start + used;
        }
        out = logfmt_line(d + at, stop - at, out, pairs);
        if (end < 0) {
            break;
        }
        *out++ = '\n';
        at = end + 1;
    }
    PyMem_Free(pairs);
    PyBuffer_Release(&view);
    if (_PyBytes_Resize(&result, out - start) < 0) {
        return NULL;
    }
    return result;
}

static PyMethodDef module_methods[] = {
    {"logfmt_json", logfmt_json, METH_O,
     "logfmt_json(data)\n--\n\nEach logfmt line as a JSON object; see logfmt.py_as_json"},
    {"count_records", count_records, METH_O,
     "count_records(data)\n--\n\nLines in data that are not blank; see jsonfields.py_count_records"},
    {"locate", locate, METH_VARARGS,
     "locate(data, hits, first_key_id, young, old, max_cached, want_values)\n--\n\n"
     "-> (lines, values, results, missing, fallback); see jsonfields.py_locate"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "perisai.classify._jsonfields",
    .m_doc = "The compiled twin of perisai.classify.jsonfields (locate, Hits).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__jsonfields(void) {
    if (PyType_Ready(&HitsType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&HitsType);
    if (PyModule_AddObject(module, "Hits", (PyObject *)&HitsType) < 0) {
        Py_DECREF(&HitsType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
