"""``main.py``'s command line with each process writing down the training images it put on its
device (``<folder>/rank<R>.json``): run under torchrun by test_ddp.py.

``python ddp_probe.py FOLDER ARGS...`` runs ``main.py ARGS...``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def main() -> int:
    out, argv = Path(sys.argv[1]), sys.argv[2:]
    sys.path.insert(0, str(REPO))
    from engine.training import resident

    make_images = resident.make_images

    def recording(examples, *args, **kwargs):
        data = make_images(examples, *args, **kwargs)
        held = data.examples if data.streamed else data.images
        record = {"ids": [ex.ident for ex in examples], "held": len(held),
                  "streamed": data.streamed}
        (out / f"rank{os.environ['RANK']}.json").write_text(json.dumps(record))
        return data

    resident.make_images = recording
    import main as entry

    return entry.main(argv)


if __name__ == "__main__":
    sys.exit(main())
