"""Metrics read back from the OpenTelemetry SDK's in-memory reader."""

from __future__ import annotations


def points(reader):
    """{(metric name, frozenset of attributes): value (sum for histograms)}."""
    out = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, frozenset(point.attributes.items()))
                    out[key] = getattr(point, "sum", getattr(point, "value", None))
    return out


def total(data, name, **attributes):
    wanted = set(attributes.items())
    return sum(v for (metric, attrs), v in data.items() if metric == name and wanted <= attrs)
