"""Durability with real processes: a writer killed with SIGKILL mid-burst loses no acknowledged write."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from longrvos_data.annotation.store import Store
from longrvos_data.schema import Frame, Track, Video

FRAMES = 8

# Writes frame i % 8 of track "a" with a mask whose first row holds i in binary, forever,
# printing "frame version i" only once `write` has returned.
WRITER = """
import sys
import numpy as np
from longrvos_data import masks
from longrvos_data.annotation.store import Store, Write
store = Store.open(sys.argv[1])
versions = {}
for i in range(100000):
    f = i % 8
    m = np.zeros((16, 24), dtype=bool)
    m[0] = [(i >> b) & 1 for b in range(24)]
    m[1:, :] = True
    applied = store.write("train", "v", [Write("a", f, base=versions.get(f, 0), rle=masks.encode(m))], user="w")
    versions[f] = applied.versions[("a", f)]
    print(f, versions[f], i, flush=True)
"""

READER = """
import json, sys
import numpy as np
from longrvos_data import masks
from longrvos_data.annotation.store import Store
with Store.open(sys.argv[1]) as store:
    sync = store.con.execute("PRAGMA synchronous").fetchone()[0]
    cells = {c.frame: [c.version, int(sum(int(b) << k for k, b in enumerate(masks.decode(c.rle)[0])))]
             for c in store.cells("train", "v")}
    print(json.dumps({"integrity": store.integrity_check(), "synchronous": sync, "cells": cells}))
"""


def test_every_acknowledged_write_survives_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "project.sqlite"
    with Store.create(db) as store, store.transaction():
        src = store.add_source(str(tmp_path))
        store.add_video(Video(dataset="d", split="train", video_id="v", height=16, width=24, tracks=[Track("a")],
                              expressions=(), frames=[Frame(f"{i:05d}", Path(f"{i:05d}.jpg")) for i in range(FRAMES)]),
                        source=src, frame_paths=[f"{i:05d}.jpg" for i in range(FRAMES)], annotated=False)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True, env=env)
    acked: dict[int, tuple[int, int]] = {}
    try:
        for _ in range(60):   # mid-burst: the writer keeps going until it is killed
            frame, version, i = map(int, writer.stdout.readline().split())
            acked[frame] = (version, i)
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    out = subprocess.run([sys.executable, "-c", READER, str(db)], capture_output=True, text=True, check=True, env=env)
    found = json.loads(out.stdout)
    assert found["integrity"] == "ok"
    assert found["synchronous"] == 2
    assert len(acked) == FRAMES
    for frame, (version, i) in acked.items():
        have_version, have_i = found["cells"][str(frame)]
        assert have_version >= version, (frame, version, have_version)
        if have_version == version:              # the acknowledged write itself, pixel for pixel
            assert have_i == i
        else:                                    # at most the one write that was in flight
            assert have_version == version + 1 and have_i == i + FRAMES
