"""What load balancers, uptime checkers and Prometheus ask of the service: HEAD on the health
and metrics endpoints, the process's own metrics, OpenMetrics, fine inference buckets."""

from __future__ import annotations

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.service.conftest import metric, post_video


def test_head_answers_like_get_without_a_body(client) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        head, get = client.head(path), client.get(path)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b"", path
    assert client.head("/metrics").headers["content-type"].startswith("text/plain")
    assert "HEAD" not in str(client.get("/openapi.json").json()["paths"]["/healthz"]).upper()


def test_process_metrics_are_on_the_services_registry(client) -> None:
    text = client.get("/metrics").text
    assert metric(text, "process_resident_memory_bytes") > 10e6
    assert metric(text, "process_open_fds") > 0
    assert "process_cpu_seconds_total" in text and "python_info" in text


def test_openmetrics_when_the_scraper_asks(client) -> None:
    answer = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert answer.text.endswith("# EOF\n")
    families = {f.name for f in text_string_to_metric_families(answer.text)}
    assert {"actserve_requests", "process_resident_memory_bytes"} <= families
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_inference_buckets_resolve_gpu_batch_times(client, videos) -> None:
    assert post_video(client, videos["h264.mp4"]).status_code == 200
    text = client.get("/metrics").text
    bounds = {
        float(line.split('le="')[1].split('"')[0])
        for line in text.splitlines()
        if line.startswith("actserve_inference_duration_seconds_bucket") and 'le="+Inf"' not in line
    }
    assert len({b for b in bounds if b < 0.005}) >= 4
