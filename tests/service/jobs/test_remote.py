"""Jobs by URI and their webhooks, against a real S3-compatible server (moto's, on loopback)
and a real HTTP server: inputs from s3:// and http(s)://, results written to s3://, the
allow-lists, redirects to private addresses, oversize inputs, signed webhooks retried."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from service.app import create_app
from service.errors import UploadTooLarge, UrlNotAllowed
from service.jobs.remote import RemoteFiles
from service.jobs.settings import JobSettings
from tests.s3_server import s3_server
from tests.service.jobs.conftest import jobs_settings, wait

SECRET = "whsec_" + base64.b64encode(b"actserve-test-secret-0123").decode()
LIMIT = 2_000_000  # bytes: above the test video, below /big


class Site(BaseHTTPRequestHandler):
    """The video, a redirect to the metadata address, an oversize file, one that grows past
    the limit with no length declared, and a webhook receiver that fails its first call."""

    video = b""
    flaky_calls = 0
    received: ClassVar[list[dict]] = []

    def do_GET(self) -> None:
        if self.path == "/video.mp4":
            self._send(200, self.video)
        elif self.path == "/flaky.mp4":  # fails twice (the submit's look, the first fetch)
            Site.flaky_calls += 1
            self._send(503 if Site.flaky_calls <= 2 else 200, self.video)
        elif self.path == "/hop":
            self._redirect("/video.mp4")
        elif self.path == "/to-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data/")
        elif self.path == "/big.mp4":
            self.send_response(200)
            self.send_header("Content-Length", str(LIMIT + 1))
            self.end_headers()  # (the client gives up before any body)
        elif self.path == "/growing.mp4":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = b"\0" * 65536
            try:
                for _ in range(LIMIT // len(block) + 2):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:  # cut by the client, as it should
                pass
        else:
            self._send(404, b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        entry = {"body": body, "headers": {k.lower(): v for k, v in self.headers.items()}}
        Site.received.append(entry)
        self._send(500 if len(Site.received) == 1 else 204, b"")

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site(videos) -> Iterator[str]:
    Site.video = videos["h264.mp4"].read_bytes()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def s3(videos) -> Iterator[object]:
    with s3_server("videos", "results", "private") as client:
        video = videos["h264.mp4"].read_bytes()
        client.put_object(Bucket="videos", Key="a/h264.mp4", Body=video)
        client.put_object(Bucket="videos", Key="big.mp4", Body=b"\0" * (LIMIT + 1))
        client.put_object(Bucket="private", Key="h264.mp4", Body=b"\0")
        yield client


@pytest.fixture(scope="module")
def app(store_root: Path, tmp_path_factory, s3, site) -> Iterator[TestClient]:
    settings = jobs_settings(
        store_root,
        tmp_path_factory.mktemp("jobs"),
        jobs_allowed_inputs=["s3://videos/*", f"{site}/*", "127.0.0.0/8"],
        jobs_allowed_outputs=["s3://results/*"],
        jobs_allowed_webhooks=[f"{site}/*", "127.0.0.0/8"],
        jobs_max_input_bytes=LIMIT,
        jobs_fetch_attempts=2,
        webhook_secret=SECRET,
    )
    with TestClient(create_app(settings)) as client:
        client.app.state.jobs.webhooks.sender.first_retry_s = 0.05  # fast retries
        yield client


def post(client: TestClient, **body: object):
    return client.post("/jobs", json=body)


def delivered(client: TestClient, job_id: str, timeout: float = 20.0) -> dict:
    """The job's webhook once its delivery has ended."""
    deadline = time.monotonic() + timeout
    while (hook := client.get(f"/jobs/{job_id}").json()["webhook"]) is None or hook[
        "state"
    ] == "pending":
        assert time.monotonic() < deadline, hook
        time.sleep(0.05)
    return hook


def test_s3_in_s3_out_with_a_signed_webhook_retried(app, s3, site) -> None:
    Site.received.clear()
    response = post(
        app,
        input_uri="s3://videos/a/h264.mp4",
        output_uri="s3://results/run-1",
        output_parquet=True,
        features=["labels", "windows"],
        webhook=f"{site}/hook",
    )
    assert response.status_code == 202, response.text
    job = wait(app, response.json()["id"])
    assert job["state"] == "succeeded", job
    assert job["input_uri"] == "s3://videos/a/h264.mp4"
    assert job["output_uri"] == "s3://results/run-1"

    written = json.loads(s3.get_object(Bucket="results", Key="run-1/results.json")["Body"].read())
    served = app.get(f"/jobs/{job['id']}/results").json()
    assert written["top_k"] == served["top_k"] and written["clips"] == served["clips"]
    import pyarrow.parquet as pq

    table = pq.read_table(
        io.BytesIO(s3.get_object(Bucket="results", Key="run-1/windows.parquet")["Body"].read())
    )
    assert table.num_rows == 12
    first = served["clips"][0]["top_k"]
    assert table.column("labels").to_pylist()[0] == [e["label"] for e in first]

    status = delivered(app, job["id"])
    assert status["state"] == "delivered"
    assert [a["status_code"] for a in status["attempts"]] == [500, 204]
    assert len(Site.received) == 2
    verifier = Webhook(SECRET)
    for call in Site.received:
        payload = verifier.verify(call["body"], call["headers"])  # raises if the signature is bad
        assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job["id"]
    assert {c["headers"]["webhook-id"] for c in Site.received} == {f"msg_{job['id']}"}
    assert not list(app.app.state.jobs.remote.fetched.iterdir())  # the download is removed


def test_https_input_followed_hop_by_hop_and_retried(app, site) -> None:
    for path in ("/hop", "/flaky.mp4"):
        response = post(app, input_uri=f"{site}{path}", features=["labels"])
        assert response.status_code == 202, response.text
        assert wait(app, response.json()["id"])["state"] == "succeeded", path
    assert Site.flaky_calls == 3


def test_refusals_at_submit(app, site) -> None:
    before = app.get("/jobs").json()["total"]
    cases = {
        f"{site}/to-metadata": (403, "url_not_allowed", "169.254.169.254"),
        "s3://private/h264.mp4": (403, "url_not_allowed", "ACTSERVE_JOBS_ALLOWED_INPUTS"),
        "https://example.com/v.mp4": (403, "url_not_allowed", "matches no pattern"),
        f"{site}/big.mp4": (413, "upload_too_large", "ACTSERVE_JOBS_MAX_INPUT_BYTES"),
        "s3://videos/big.mp4": (413, "upload_too_large", "ACTSERVE_JOBS_MAX_INPUT_BYTES"),
        "s3://videos/missing.mp4": (400, "bad_request", "no object"),
        f"{site}/missing.mp4": (400, "bad_request", "404"),
    }
    for uri, (status, code, words) in cases.items():
        response = post(app, input_uri=uri)
        assert response.status_code == status, (uri, response.text)
        assert response.json()["error"] == code and words in response.json()["message"], uri
    bad = {
        "output_uri": ("s3://private/out", 403),
        "webhook": ("http://169.254.169.254/hook", 403),
    }
    for field, (value, status) in bad.items():
        response = post(app, input_uri="s3://videos/a/h264.mp4", **{field: value})
        assert response.status_code == status, (field, response.text)
    assert post(app, input_uri="s3://videos/a/h264.mp4", input={"uri": "x"}).status_code == 400
    assert app.get("/jobs").json()["total"] == before  # none was taken


def test_a_download_that_grows_past_the_limit_is_cut(app, site) -> None:
    response = post(app, input_uri=f"{site}/growing.mp4", webhook=f"{site}/hook")
    assert response.status_code == 202, response.text  # no length declared: taken
    job = wait(app, response.json()["id"])
    assert job["state"] == "failed"
    assert job["error"]["error"] == "upload_too_large" and "grew past" in job["error"]["message"]
    hook = delivered(app, job["id"])
    assert hook["state"] == "delivered" and hook["attempts"][-1]["status_code"] == 204


def test_nothing_is_fetched_by_default(tmp_path) -> None:
    remote = RemoteFiles(JobSettings(dir=tmp_path), tmp_path)
    with pytest.raises(UrlNotAllowed, match="ACTSERVE_JOBS_ALLOWED_INPUTS is empty"):
        remote.check("https://example.com/v.mp4")
    with pytest.raises(UrlNotAllowed, match="ACTSERVE_JOBS_ALLOWED_OUTPUTS is empty"):
        remote.check_output("s3://results/x")


def test_a_stream_past_the_limit_is_cut_while_copying(tmp_path) -> None:
    remote = RemoteFiles(JobSettings(dir=tmp_path, max_input_bytes=10), tmp_path)
    out = io.BytesIO()
    with pytest.raises(UploadTooLarge, match="grew past 12 bytes"):
        remote._copy("s3://v/x", iter([b"123456", b"789012", b"345"]), out)
    assert out.getvalue() == b"123456"


def test_an_upload_names_its_webhook_as_a_parameter(app, site, videos) -> None:
    from tests.service.jobs.conftest import submit

    response = submit(app, videos["h264.mp4"], features="labels", webhook=f"{site}/hook")
    assert response.status_code == 202, response.text
    job = wait(app, response.json()["id"])
    assert job["state"] == "succeeded" and job["input_uri"] is None
    hook = delivered(app, job["id"])
    assert hook["state"] == "delivered" and hook["message_id"] == f"msg_{job['id']}"
    refused = submit(app, videos["h264.mp4"], webhook="http://10.1.2.3/hook")
    assert refused.status_code == 403 and refused.json()["error"] == "url_not_allowed"
