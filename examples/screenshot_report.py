"""Take a screenshot of an HTML report with headless Chromium (for the README).

Usage::

    fedscore demo --out fedscore-demo
    python examples/screenshot_report.py fedscore-demo/report/brand.html docs/report.png

Needs a Chromium binary (Debian: ``apt-get install chromium``). Networking is switched
off as far as Chromium allows: the report is self-contained and must render offline.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)


def find_browser():
    """Path of the first Chromium-like browser on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(html_path, png_path, *, width=1280, height=2000, browser=None, timeout=120):
    """Render ``html_path`` in headless Chromium and save a ``width`` × ``height`` PNG."""
    browser = browser or find_browser()
    if browser is None:
        raise RuntimeError("no Chromium found (Debian: apt-get install chromium)")
    html_path, png_path = Path(html_path).resolve(), Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fedscore-chromium-") as profile:
        command = [browser, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png_path}",
                   f"--window-size={width},{height}", html_path.as_uri()]
        subprocess.run(command, check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not png_path.is_file():
        raise RuntimeError("Chromium ran but wrote no screenshot")
    return png_path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", help="the report to open, e.g. fedscore-demo/report/brand.html")
    parser.add_argument("png", nargs="?", default=str(Path(__file__).resolve().parents[1] / "docs" / "report.png"),
                        help="where to save the screenshot (default: docs/report.png)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2000)
    args = parser.parse_args()
    try:
        path = screenshot(args.html, args.png, width=args.width, height=args.height)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        sys.exit(f"error: {exc}")
    print(path)


if __name__ == "__main__":
    main()
