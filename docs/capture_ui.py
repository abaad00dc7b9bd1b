"""Screenshots of the MLflow UI for README, taken with headless Chromium over the DevTools protocol.

    python docs/capture_ui.py URL OUT.png [--wait 12] [--width 1600] [--height 1100] [--click TEXT]

Loads URL in a fresh headless Chromium, waits (real time: the charts draw asynchronously), closes
MLflow's assistant side panel if it is open, optionally clicks the first button or tab whose text
or aria-label is TEXT, waits again, and writes the page as PNG. Needs `chromium` on PATH; talks to
it with aiohttp (installed with Ray).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import socket
import subprocess
import tempfile
import urllib.request

CLOSE_ASSISTANT = """
(() => {
  const panel = [...document.querySelectorAll('*')].find(e => e.textContent.trim().startsWith('MLflow Assistant')
      && e.querySelector('button[aria-label="Close"], button[aria-label="close"]'));
  const close = panel && panel.querySelector('button[aria-label="Close"], button[aria-label="close"]');
  if (close) { close.click(); return true; }
  return false;
})()
"""

CLICK = """
((text) => {
  const all = [...document.querySelectorAll('button, [role=tab], [role=radio], a, label, input')];
  const name = e => (e.getAttribute('aria-label') || e.getAttribute('title') || e.getAttribute('value')
      || e.textContent || '').trim();
  const hit = all.find(e => name(e) === text);
  if (hit) { hit.click(); return 'clicked'; }
  return all.map(name).filter(n => n && n.length < 40).join(' | ');
})(%s)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def capture(url: str, out: str, wait: float, width: int, height: int, click: str | None) -> None:
    import aiohttp

    port = _free_port()
    profile = tempfile.mkdtemp(prefix="chromium-")
    browser = subprocess.Popen(
        [
            "chromium",
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--remote-debugging-port={port}",
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=1))
                break
            except OSError:
                await asyncio.sleep(0.2)
        else:
            raise RuntimeError("chromium did not open its DevTools port")
        target = next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"]
        async with aiohttp.ClientSession() as session, session.ws_connect(target, max_msg_size=0) as ws:
            ids = iter(range(1, 10**6))

            async def call(method: str, **params):
                message_id = next(ids)
                await ws.send_json({"id": message_id, "method": method, "params": params})
                async for message in ws:
                    data = json.loads(message.data)
                    if data.get("id") == message_id:
                        return data.get("result", {})
                raise RuntimeError(f"chromium closed the connection during {method}")

            await call(
                "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
            )
            await call("Page.navigate", url=url)
            await asyncio.sleep(wait)
            await call("Runtime.evaluate", expression=CLOSE_ASSISTANT)
            if click:
                found = await call("Runtime.evaluate", expression=CLICK % json.dumps(click), returnByValue=True)
                answer = found.get("result", {}).get("value")
                if answer != "clicked":
                    raise RuntimeError(f"nothing to click labelled {click!r}; on the page: {answer}")
                await asyncio.sleep(wait)
            await asyncio.sleep(1)
            shot = await call("Page.captureScreenshot", format="png")
        with open(out, "wb") as handle:
            handle.write(base64.b64decode(shot["data"]))
    finally:
        browser.terminate()
        browser.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--wait", type=float, default=12.0, help="seconds to let the page draw")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1100)
    parser.add_argument("--click", help="text or aria-label of a button/tab to click before the screenshot")
    args = parser.parse_args()
    asyncio.run(capture(args.url, args.out, args.wait, args.width, args.height, args.click))


if __name__ == "__main__":
    main()
