(function () {
  "use strict";
  var cards = Array.prototype.slice.call(document.querySelectorAll("article.card"));
  var boxes = Array.prototype.slice.call(document.querySelectorAll("input[data-filter-severity]"));
  var service = document.getElementById("filter-service");
  var search = document.getElementById("filter-search");
  var shown = document.getElementById("shown-count");
  function apply() {
    var severities = {};
    boxes.forEach(function (box) { if (box.checked) { severities[box.value] = true; } });
    var wanted = service.value;
    var query = search.value.trim().toLowerCase();
    var visible = 0;
    cards.forEach(function (card) {
      var ok = severities[card.getAttribute("data-severity")] === true &&
        (wanted === "" || card.getAttribute("data-service") === wanted) &&
        (query === "" || card.textContent.toLowerCase().indexOf(query) !== -1);
      card.hidden = !ok;
      if (ok) { visible += 1; }
    });
    shown.textContent = String(visible);
  }
  boxes.forEach(function (box) { box.addEventListener("change", apply); });
  service.addEventListener("change", apply);
  search.addEventListener("input", apply);
  apply();
}());
