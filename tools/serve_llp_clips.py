"""Stand a loopback server (127.0.0.1) in for YouTube: generated 'full videos' for a few LLP ids, for the
README's "Reproduce LLP from scratch" run without network.

    python tools/serve_llp_clips.py --dir llp_demo/sources --csv llp_demo/subset.csv --port 8765
    # then: avvp-download --csv llp_demo/subset.csv --out llp_demo/videos \
    #           --url-template 'http://127.0.0.1:8765/{ytid}.mp4'

Serves until interrupted. The clips and the server are the test helpers' (tests/helpers/llp_clips.py,
tests/helpers/loopback.py); run it from the repository root.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers.llp_clips import make_sources, write_csv  # noqa: E402
from tests.helpers.loopback import LoopbackVideos  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, required=True, help="where the generated full videos are written")
    p.add_argument("--csv", type=Path, required=True, help="the LLP CSV of these videos (written)")
    p.add_argument("--port", type=int, default=8765)
    args = p.parse_args()
    files = make_sources(args.dir)
    write_csv(args.csv)
    server = LoopbackVideos(files=files, port=args.port)
    print(f"serving {len(files)} videos at {server.url_template} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
