"""Re-capture the request fixtures of the header layer: ``python -m tests.capture_requests``.

A small recording server on loopback serves a page from ``http://127.0.0.1:PORT`` whose
script sends a Rybbit-like hit to ``http://localhost:PORT/api/track`` (another site: the
tracker's cross-origin ``fetch`` POST with a JSON body, preflighted, ``keepalive`` as
Rybbit's tracker sends it). Both hosts are potentially trustworthy origins, so browsers send
``Sec-Fetch-*`` and client hints as they do over HTTPS. The server records every POST's
headers exactly as received (name case and order kept).

Browsers (``data/requests/browsers.json``, which the header layer must never flag): Debian's
Chromium over CDP (``tests/browser.py``) with the user agent and its client-hint metadata
overridden as DevTools' device mode overrides them (desktop Linux, Windows, macOS, Edge;
mobile emulation as an Android phone and an iPhone), and with a user agent overridden
without metadata (as a UA-switcher extension does); Debian's Firefox ESR headless, with its
own user agent and with ``general.useragent.override`` (Windows, Android, macOS).

Clients (``data/requests/clients.json``, which it should flag): curl, wget, Python
``requests``, ``httpx`` and ``urllib``, Node ``fetch``, Go's ``net/http`` where ``go`` is
installed, and headless Chromium itself; each with its own user agent and with a Chrome one.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .browser import Browser, chromium_path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "requests"
VENV_PYTHON = sys.executable
PAYLOAD = {
    "type": "pageview",
    "site_id": "1",
    "hostname": "127.0.0.1",
    "pathname": "/page",
    "language": "en-US",
    "screenWidth": 1920,
    "screenHeight": 1080,
}
PAGE = """<!doctype html><html><head><title>capture</title></head><body><script>
const payload = %s;
const kind = new URLSearchParams(location.search).get("kind") || "fetch";
const url = "http://localhost:%d/api/track";
if (kind === "beacon") {
  navigator.sendBeacon(url, new Blob([JSON.stringify(payload)], {type: "text/plain"}));
  document.title = "sent";
} else {
  fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
              body: JSON.stringify(payload), mode: "cors", keepalive: true})
    .then(() => { document.title = "sent"; }, (e) => { document.title = "failed " + e; });
}
</script></body></html>"""


class Recorder(ThreadingHTTPServer):
    """Records the headers of every POST; serves the page and answers preflights."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.posts: list[list[list[str]]] = []
        self.changed = threading.Condition()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def wait_for(self, count: int, timeout: float = 30.0) -> list[list[str]]:
        """The ``count``-th POST's headers, waiting up to ``timeout`` seconds."""
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.posts) >= count, timeout):
                raise TimeoutError(f"no POST number {count} within {timeout} s")
            return self.posts[count - 1]


class _Handler(BaseHTTPRequestHandler):
    server: Recorder
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin") or "*")
        self.send_header("Access-Control-Allow-Credentials", "true")
        self.send_header("Access-Control-Allow-Headers", "content-type")
        self.send_header("Access-Control-Allow-Methods", "POST")

    def do_GET(self) -> None:
        body = (PAGE % (json.dumps(PAYLOAD), self.server.port)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self._cors()
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        headers = [[name, value] for name, value in self.headers.items()]
        body = b'{"success":true}'
        self.send_response(200)
        self._cors()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with self.server.changed:
            self.server.posts.append(headers)
            self.server.changed.notify_all()


@contextlib.contextmanager
def recording() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def chrome_ua(platform: str, major: str, *, mobile: bool = False) -> str:
    """A reduced Chrome user agent (as Chrome >= 101 sends) for a platform."""
    os_part = {
        "Linux": "X11; Linux x86_64",
        "Windows": "Windows NT 10.0; Win64; x64",
        "macOS": "Macintosh; Intel Mac OS X 10_15_7",
        "Android": "Linux; Android 10; K",
    }[platform]
    suffix = " Mobile Safari/537.36" if mobile else " Safari/537.36"
    engine = "AppleWebKit/537.36 (KHTML, like Gecko)"
    return f"Mozilla/5.0 ({os_part}) {engine} Chrome/{major}.0.0.0{suffix}"


def metadata(platform: str, major: str, brand: str, *, mobile: bool = False) -> dict[str, Any]:
    """Client-hint metadata as DevTools' device mode sends with its user agent."""
    brands = [
        {"brand": brand, "version": major},
        {"brand": "Chromium", "version": major},
        {"brand": "Not_A Brand", "version": "24"},
    ]
    return {
        "brands": brands,
        "fullVersionList": [{**each, "version": f"{each['version']}.0.0.0"} for each in brands],
        "platform": platform,
        "platformVersion": {"Windows": "10.0.0", "macOS": "14.5.0", "Android": "10.0"}.get(
            platform, "6.1.0"
        ),
        "architecture": "" if mobile else "x86",
        "model": "K" if mobile else "",
        "mobile": mobile,
        "bitness": "" if mobile else "64",
    }


IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
FIREFOX_WINDOWS_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
)
FIREFOX_ANDROID_UA = "Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0"
FIREFOX_MAC_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:128.0) Gecko/20100101 Firefox/128.0"
)


def chromium_variants(major: str) -> list[tuple[str, dict[str, Any] | None, bool, str]]:
    """Browser variants: (name, user-agent override or None, mobile emulation, kind)."""
    edge_ua = chrome_ua("Windows", major) + f" Edg/{major}.0.0.0"
    return [
        (
            "chromium-linux",
            {
                "userAgent": chrome_ua("Linux", major),
                "userAgentMetadata": metadata("Linux", major, "Google Chrome"),
            },
            False,
            "fetch",
        ),
        (
            "chromium-linux-beacon",
            {
                "userAgent": chrome_ua("Linux", major),
                "userAgentMetadata": metadata("Linux", major, "Google Chrome"),
            },
            False,
            "beacon",
        ),
        (
            "chromium-windows",
            {
                "userAgent": chrome_ua("Windows", major),
                "userAgentMetadata": metadata("Windows", major, "Google Chrome"),
            },
            False,
            "fetch",
        ),
        (
            "chromium-macos",
            {
                "userAgent": chrome_ua("macOS", major),
                "userAgentMetadata": metadata("macOS", major, "Google Chrome"),
            },
            False,
            "fetch",
        ),
        (
            "chromium-edge-windows",
            {
                "userAgent": edge_ua,
                "userAgentMetadata": metadata("Windows", major, "Microsoft Edge"),
            },
            False,
            "fetch",
        ),
        (
            "chromium-android-mobile",
            {
                "userAgent": chrome_ua("Android", major, mobile=True),
                "userAgentMetadata": metadata("Android", major, "Google Chrome", mobile=True),
            },
            True,
            "fetch",
        ),
        ("chromium-iphone-mobile", {"userAgent": IPHONE_UA}, True, "fetch"),
        ("chromium-ua-switcher-firefox", {"userAgent": FIREFOX_WINDOWS_UA}, False, "fetch"),
        (
            "chromium-ua-switcher-windows-chrome",
            {"userAgent": chrome_ua("Windows", major)},
            False,
            "fetch",
        ),
    ]


def capture_chromium(
    recorder: Recorder, out: list[dict[str, Any]], bots: list[dict[str, Any]]
) -> None:
    binary = chromium_path()
    if binary is None:
        print("no Chromium: browser fixtures not re-captured", file=sys.stderr)
        return
    browser = Browser(binary)
    try:
        product = browser.send("Browser.getVersion")["product"]  # HeadlessChrome/156.0...
        major = product.split("/")[1].split(".")[0]
        variants = [
            (f"{name}", ua, mobile, kind, out)
            for name, ua, mobile, kind in chromium_variants(major)
        ]
        variants += [
            ("headless-chromium", None, False, "fetch", bots),
            (
                "headless-chromium-chrome-ua",
                {"userAgent": chrome_ua("Linux", major)},
                False,
                "fetch",
                bots,
            ),
        ]
        for name, override, mobile, kind, target in variants:
            with browser.page() as page:
                if override is not None:
                    page.send("Emulation.setUserAgentOverride", override)
                if mobile:
                    page.send(
                        "Emulation.setDeviceMetricsOverride",
                        {"width": 412, "height": 915, "deviceScaleFactor": 2.625, "mobile": True},
                    )
                    page.send("Emulation.setTouchEmulationEnabled", {"enabled": True})
                count = len(recorder.posts) + 1
                page.navigate(f"http://127.0.0.1:{recorder.port}/page?kind={kind}")
                headers = recorder.wait_for(count)
                target.append({"client": name, "engine": product, "kind": kind, "headers": headers})
    finally:
        browser.close()


def firefox_binary() -> str | None:
    return shutil.which("firefox-esr") or shutil.which("firefox")


FIREFOX_PREFS = {
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.enabled": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "extensions.update.enabled": False,
}


def capture_firefox(
    recorder: Recorder, out: list[dict[str, Any]], *, only: tuple[str, ...] = ()
) -> None:
    binary = firefox_binary()
    if binary is None:
        print("no Firefox: its fixtures not re-captured", file=sys.stderr)
        return
    version = subprocess.run(
        [binary, "--version"], check=False, capture_output=True, text=True
    ).stdout.strip()
    variants = [
        ("firefox-linux", None, "fetch"),
        ("firefox-linux-beacon", None, "beacon"),
        ("firefox-windows", FIREFOX_WINDOWS_UA, "fetch"),
        ("firefox-macos", FIREFOX_MAC_UA, "fetch"),
        ("firefox-android-mobile", FIREFOX_ANDROID_UA, "fetch"),
    ]
    for name, ua, kind in variants:
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory(prefix="edgefilter-firefox-") as profile:
            prefs = dict(FIREFOX_PREFS)
            if ua is not None:
                prefs["general.useragent.override"] = ua
            Path(profile, "user.js").write_text(
                "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())
            )
            count = len(recorder.posts) + 1
            process = subprocess.Popen(
                [
                    binary,
                    "--headless",
                    "--no-remote",
                    "--profile",
                    profile,
                    f"http://127.0.0.1:{recorder.port}/page?kind={kind}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                headers = recorder.wait_for(count, timeout=60)
            finally:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            out.append({"client": name, "engine": version, "kind": kind, "headers": headers})


def client_commands(url: str, body: str, chrome: str) -> list[tuple[str, list[str]]]:
    """(name, argv) of each command-line client, with its own and with a Chrome user agent."""
    requests_code = (
        "import sys, requests; h={'Content-Type': 'application/json'}; "
        "h.update({'User-Agent': sys.argv[3]} if len(sys.argv) > 3 else {}); "
        "requests.post(sys.argv[1], data=sys.argv[2], headers=h)"
    )
    httpx_code = requests_code.replace("requests", "httpx")
    urllib_code = (
        "import sys, urllib.request as u; h={'Content-Type': 'application/json'}; "
        "h.update({'User-Agent': sys.argv[3]} if len(sys.argv) > 3 else {}); "
        "u.urlopen(u.Request(sys.argv[1], data=sys.argv[2].encode(), headers=h))"
    )
    node_code = (
        "const [u, b, a] = process.argv.slice(1); const h = {'Content-Type': 'application/json'};"
        "if (a) h['User-Agent'] = a; fetch(u, {method: 'POST', headers: h, body: b});"
    )
    system_python = shutil.which("python3") or "python3"  # the one with requests installed
    json_type = "Content-Type: application/json"
    commands: list[tuple[str, list[str]]] = [
        ("curl", ["curl", "-s", "-o", "/dev/null", "-H", json_type, "--data", body, url]),
        (
            "curl-chrome-ua",
            ["curl", "-s", "-o", "/dev/null", "-A", chrome, "-H", json_type, "--data", body, url],
        ),
        (
            "curl-browser-headers",
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "--compressed",
                "-A",
                chrome,
                "-H",
                json_type,
                "-H",
                "Accept: */*",
                "-H",
                "Accept-Language: en-US,en;q=0.9",
                "-H",
                "Origin: https://example.com",
                "--data",
                body,
                url,
            ],
        ),
        (
            "wget",
            ["wget", "-q", "-O", "/dev/null", f"--header={json_type}", f"--post-data={body}", url],
        ),
        (
            "wget-chrome-ua",
            [
                "wget",
                "-q",
                "-O",
                "/dev/null",
                "-U",
                chrome,
                f"--header={json_type}",
                f"--post-data={body}",
                url,
            ],
        ),
        ("python-requests", [system_python, "-c", requests_code, url, body]),
        ("python-requests-chrome-ua", [system_python, "-c", requests_code, url, body, chrome]),
        ("python-httpx", [VENV_PYTHON, "-c", httpx_code, url, body]),
        ("python-httpx-chrome-ua", [VENV_PYTHON, "-c", httpx_code, url, body, chrome]),
        ("python-urllib", [VENV_PYTHON, "-c", urllib_code, url, body]),
        ("python-urllib-chrome-ua", [VENV_PYTHON, "-c", urllib_code, url, body, chrome]),
        ("node-fetch", ["node", "-e", node_code, url, body]),
        ("node-fetch-chrome-ua", ["node", "-e", node_code, url, body, chrome]),
    ]
    if shutil.which("go"):
        go_run = ["go", "run", str(ROOT / "tests" / "data" / "post.go"), url, body]
        commands += [("go-net-http", go_run), ("go-net-http-chrome-ua", [*go_run, chrome])]
    return commands


def client_version(program: str) -> str:
    """The first line a client prints of its own version ("" when it prints none)."""
    argv = [program, "version"] if Path(program).name == "go" else [program, "--version"]
    result = subprocess.run(argv, check=False, capture_output=True, text=True)
    return (result.stdout.splitlines() or [""])[0]


def capture_clients(recorder: Recorder, out: list[dict[str, Any]], missing: list[str]) -> None:
    url = f"http://localhost:{recorder.port}/api/track"
    chrome = chrome_ua("Windows", "131")
    for name, argv in client_commands(url, json.dumps(PAYLOAD), chrome):
        if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
            missing.append(name)
            continue
        count = len(recorder.posts) + 1
        result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            missing.append(f"{name} (exit {result.returncode}: {result.stderr.strip()[:200]})")
            continue
        out.append(
            {
                "client": name,
                "engine": client_version(argv[0]),
                "kind": "post",
                "headers": recorder.wait_for(count),
            }
        )
    if not shutil.which("go"):
        missing.append("go-net-http (no go on this machine)")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    browsers: list[dict[str, Any]] = []
    clients: list[dict[str, Any]] = []
    missing: list[str] = []
    with recording() as recorder:
        capture_chromium(recorder, browsers, clients)
        capture_firefox(recorder, browsers)
        capture_clients(recorder, clients, missing)
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    for name, records, note in (
        ("browsers.json", browsers, "real browser engines: the header layer must flag none"),
        ("clients.json", clients, "HTTP clients and headless Chromium: what the layer should flag"),
    ):
        document = {
            "captured": stamp,
            "note": note,
            "not_captured": missing if name == "clients.json" else [],
            "requests": records,
        }
        (OUT / name).write_text(json.dumps(document, indent=1) + "\n")
        print(f"{name}: {len(records)} requests")
    if missing:
        print("not captured:", *missing, sep="\n  ")


if __name__ == "__main__":
    main()
