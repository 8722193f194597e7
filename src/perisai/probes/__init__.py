"""Data-store probes, one module per protocol, found through the ``perisai.probes`` entry points."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

from perisai.probes.interface import (
    Access,
    Fingerprint,
    Probe,
    ProbeResult,
    ProbeSkipped,
    ScanConfig,
)

# The probes shipped with perisai, used when the package's entry points are not installed
# (running from a source tree); third-party probes arrive only through entry points.
BUILTIN_PROBES = (
    "perisai.probes.redis:RedisProbe",
    "perisai.probes.postgres:PostgresProbe",
    "perisai.probes.mysql:MySQLProbe",
    "perisai.probes.rabbitmq:RabbitMQProbe",
    "perisai.probes.mqtt:MQTTProbe",
    "perisai.probes.nats:NATSProbe",
    "perisai.probes.elasticsearch:ElasticsearchProbe",
    "perisai.probes.kibana:KibanaProbe",
    "perisai.probes.couchdb:CouchDBProbe",
    "perisai.probes.etcd:EtcdProbe",
    "perisai.probes.clickhouse:ClickHouseProbe",
    "perisai.probes.influxdb:InfluxDBProbe",
    "perisai.probes.memcached:MemcachedProbe",
    "perisai.probes.mongodb:MongoDBProbe",
    "perisai.probes.zookeeper:ZooKeeperProbe",
)


def probe_classes() -> list[type[Probe]]:
    """Every registered probe class, validated; built-ins first, in a stable order."""
    specs = {spec.split(":", 1)[0]: spec for spec in BUILTIN_PROBES}
    for entry in entry_points(group="perisai.probes"):
        specs.setdefault(entry.value.split(":", 1)[0], entry.value)
    classes: list[type[Probe]] = []
    for spec in specs.values():
        module_name, _, class_name = spec.partition(":")
        module = import_module(module_name)
        probe_class = getattr(module, class_name)
        if not (isinstance(probe_class, type) and issubclass(probe_class, Probe)):
            raise TypeError(f"{spec} is not a perisai Probe")
        probe_class.validate()
        classes.append(probe_class)
    return classes


__all__ = [
    "BUILTIN_PROBES",
    "Access",
    "Fingerprint",
    "Probe",
    "ProbeResult",
    "ProbeSkipped",
    "ScanConfig",
    "probe_classes",
]
