"""The store: pragmas, versions and provenance, conflicts, history, undo/redo, migrations."""
from __future__ import annotations

import sqlite3
import zlib
from pathlib import Path

import numpy as np
import pytest

from longrvos_data import masks
from longrvos_data.annotation.store import (MIGRATIONS, SCHEMA_VERSION, Conflict, Store, StoreError, UndoRefused,
                                            Write)
from longrvos_data.schema import Expression, Frame, Track, Video

from fixtures import grid

A0 = grid("##...",
          "##...",
          ".....",
          ".....")
A1 = grid(".....",
          ".###.",
          ".###.",
          ".....")
B2 = grid(".....",
          ".....",
          ".....",
          "....#")


def rle(mask: np.ndarray) -> dict:
    return masks.encode(mask)


def pixels(cell) -> list | None:
    return None if cell.rle is None else masks.decode(cell.rle).tolist()


@pytest.fixture()
def store(tmp_path: Path):
    s = Store.create(tmp_path / "p" / "project.sqlite")
    video = Video(dataset="hand", split="train", video_id="v", frames=[Frame(f"{i:05d}", Path(f"{i:05d}.jpg"))
                                                                     for i in range(3)],
                  height=4, width=5, tracks=[Track("a", "cat"), Track("b")],
                  expressions=[Expression("0", "the cat", ("a",), "referring")])
    with s.transaction():
        src = s.add_source(str(tmp_path / "frames"))
        s.add_video(video, source=src, frame_paths=[f"v/{f.name}.jpg" for f in video.frames], annotated=False)
    yield s
    s.close()


def test_every_connection_is_wal_with_synchronous_full(store: Store) -> None:
    assert store.con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.con.execute("PRAGMA synchronous").fetchone()[0] == 2        # FULL
    with Store.open(store.path) as other:
        assert other.con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.con.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert store.con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_cells_start_not_annotated_and_every_write_raises_the_version(store: Store) -> None:
    assert store.cell("train", "v", "a", 0) == store.cell("train", "v", "a", 0).__class__("a", 0)
    first = store.write("train", "v", [Write("a", 0, base=0, rle=rle(A0)), Write("b", 0, base=0, state="absent")],
                        user="ana", label="brush")
    assert first.versions == {("a", 0): 1, ("b", 0): 1}
    cell = store.cell("train", "v", "a", 0)
    assert (cell.state, cell.provenance, cell.version, cell.op_id) == ("present", "human", 1, first.op_id)
    assert pixels(cell) == A0.tolist()
    second = store.write("train", "v", [Write("a", 0, base=1, rle=rle(A1), provenance="propagated")], user="ana")
    assert store.cell("train", "v", "a", 0).version == 2
    assert store.cell("train", "v", "a", 0).provenance == "propagated"
    empty = store.write("train", "v", [Write("b", 2, base=0, rle=masks.empty(4, 5))], user="ana")
    b2 = store.cell("train", "v", "b", 2)
    assert (b2.state, masks.decode(b2.rle).sum(), b2.version) == ("present", 0, 1)   # present but empty
    assert [c.track_id for c in store.cells("train", "v", frame=0)] == ["a", "b"]
    op = store.operation(second.op_id)
    assert (op.user, op.kind, op.label, op.status) == ("ana", "edit", "edit", "applied")
    (change,) = op.changes
    assert (change.before.version, change.after.version) == (1, 2)
    assert pixels(change.before) == A0.tolist() and pixels(change.after) == A1.tolist()
    assert [o.op_id for o in store.history(user="ana")] == [empty.op_id, second.op_id, first.op_id]


@pytest.mark.parametrize("write, message", [
    (Write("zz", 0, base=0, state="absent"), "train/v track 'zz' frame 0: the video has no such track"),
    (Write("a", 3, base=0, state="absent"), "train/v track 'a' frame 3: the video has 3 frames"),
    (Write("a", 0, base=0, rle=masks.empty(2, 2)), "train/v track 'a' frame 0: expected an RLE of size [4, 5], "
                                                   "got size [2, 2]"),
    (Write("a", 0, base=0, state="absent", provenance="robot"), "provenance 'robot' is not one of imported, human, "
                                                                "propagated, model:<name>"),
])
def test_bad_writes_are_refused_and_write_nothing(store: Store, write: Write, message: str) -> None:
    with pytest.raises(StoreError) as err:
        store.write("train", "v", [Write("b", 1, base=0, state="absent"), write], user="ana")
    assert str(err.value) == message
    assert store.cells("train", "v") == []
    assert store.history() == []


def test_two_users_on_one_mask_the_stale_operation_is_refused_whole(store: Store) -> None:
    store.write("train", "v", [Write("a", 0, base=0, rle=rle(A0))], user="ana")        # both read v1
    bob = store.write("train", "v", [Write("a", 0, base=1, rle=rle(A1))], user="bob")
    with pytest.raises(Conflict) as err:     # ana, still on v1, also writes b@1: nothing of it may land
        store.write("train", "v", [Write("b", 1, base=0, rle=rle(B2)), Write("a", 0, base=1, state="absent")],
                    user="ana", label="brush")
    conflict = err.value
    assert [(s.track_id, s.frame, s.base, s.version, s.op_id) for s in conflict.stale] == [("a", 0, 1, 2, bob.op_id)]
    assert str(conflict) == (f"conflict: 1 cell(s) changed since they were read: train/v track 'a' frame 0 "
                             f"(expected v1, now v2 by operation {bob.op_id}); nothing was written (kept as "
                             f"rejected operation {conflict.rejected_op})")
    assert pixels(store.cell("train", "v", "a", 0)) == A1.tolist()              # bob's survives
    assert store.cell("train", "v", "b", 1).state == "none"                      # nothing of ana's landed
    rejected = store.operation(conflict.rejected_op)
    assert (rejected.user, rejected.status, rejected.label) == ("ana", "rejected", "brush")
    proposed = {(c.after.track_id, c.after.frame): (c.after.state, pixels(c.after)) for c in rejected.changes}
    assert proposed == {("a", 0): ("absent", None), ("b", 1): ("present", B2.tolist())}
    # re-applied on the versions the conflict showed: it lands as a new edit
    again = store.reapply(conflict.rejected_op, user="ana")
    assert again.versions == {("a", 0): 3, ("b", 1): 1}
    assert store.cell("train", "v", "a", 0).state == "absent"
    assert store.operation(again.op_id).label == f"reapply {conflict.rejected_op}"


def test_undo_and_redo_per_user(store: Store) -> None:
    e1 = store.write("train", "v", [Write("a", 0, base=0, rle=rle(A0))], user="ana")
    prop = store.write("train", "v", [Write("a", i, base=0 if i else 1, rle=rle(A1), provenance="propagated")
                                      for i in range(3)], user="ana", label="propagate")
    store.write("train", "v", [Write("b", 2, base=0, rle=rle(B2))], user="bob")
    undo = store.undo(user="ana")                     # the whole propagation, in one operation
    assert store.operation(undo.op_id).target == prop.op_id
    assert [(c.state, c.version) for c in (store.cell("train", "v", "a", i) for i in range(3))] == \
        [("present", 3), ("none", 2), ("none", 2)]
    assert pixels(store.cell("train", "v", "a", 0)) == A0.tolist()
    assert store.cell("train", "v", "a", 0).provenance == "human"
    assert store.cell("train", "v", "b", 2).version == 1                      # bob's edit untouched
    redo = store.redo(user="ana")
    assert redo.versions == {("a", 0): 4, ("a", 1): 3, ("a", 2): 3}
    assert {store.cell("train", "v", "a", i).provenance for i in range(3)} == {"propagated"}
    store.undo(user="ana")
    store.undo(user="ana")                            # then e1
    assert store.cell("train", "v", "a", 0).state == "none"
    with pytest.raises(StoreError, match="^user 'ana' has nothing to undo$"):
        store.undo(user="ana")
    store.redo(user="ana")                            # e1 again
    assert pixels(store.cell("train", "v", "a", 0)) == A0.tolist()
    store.write("train", "v", [Write("b", 0, base=0, state="absent")], user="ana")   # a new edit clears redo
    with pytest.raises(StoreError, match="^user 'ana' has nothing to redo$"):
        store.redo(user="ana")
    assert store.operation(e1.op_id).undone_by is None


def test_undo_of_an_operation_whose_cells_changed_is_refused_naming_them(store: Store) -> None:
    store.write("train", "v", [Write("a", 0, base=0, rle=rle(A0)), Write("a", 1, base=0, rle=rle(A0))], user="ana")
    bob = store.write("train", "v", [Write("a", 1, base=1, state="absent")], user="bob")
    before = store.history()
    with pytest.raises(UndoRefused) as err:
        store.undo(user="ana")
    assert str(err.value) == (f"cannot undo operation 1: 1 of its cell(s) were changed since by operation(s) "
                              f"{bob.op_id}: train/v track 'a' frame 1 (now v2 by operation {bob.op_id})")
    assert store.history() == before and store.cell("train", "v", "a", 0).version == 1     # nothing written
    store.undo(user="bob")
    store.undo(user="ana")                            # now possible
    assert store.cell("train", "v", "a", 1).state == "none"
    late = store.write("train", "v", [Write("a", 0, base=2, rle=rle(A1))], user="bob")
    with pytest.raises(UndoRefused) as err:
        store.redo(user="ana")
    assert str(err.value) == (f"cannot redo operation 1: 1 of its cell(s) were changed since by operation(s) "
                              f"{late.op_id}: train/v track 'a' frame 0 (now v3 by operation {late.op_id})")
    assert store.cell("train", "v", "a", 1).version == 4                     # the refused redo wrote nothing


def test_metadata_status_assignee_and_relink(store: Store, tmp_path: Path) -> None:
    store.set_status("train", "v", "done")
    store.assign("train", "v", "ana")
    info = store.video_info("train", "v")
    assert (info.status, info.assignee, info.frames[1].path) == ("done", "ana", tmp_path / "frames" / "v" / "00001.jpg")
    assert store.video_ids("train", status=["done"]) == ["v"] and store.video_ids("train", status=["todo"]) == []
    with pytest.raises(StoreError, match="^status must be one of todo, in_progress, done, reviewed, not 'finished'$"):
        store.set_status("train", "v", "finished")
    assert store.relink(tmp_path / "frames", tmp_path / "moved") == 1
    assert store.video_info("train", "v").frames[0].path == tmp_path / "moved" / "v" / "00000.jpg"
    with pytest.raises(StoreError, match=f"no frames are recorded under {tmp_path / 'frames'}; recorded roots: "
                                         f"{tmp_path / 'moved'}$"):
        store.relink(tmp_path / "frames", tmp_path / "x")


def _v1_database(path: Path) -> None:
    """A schema-1 project written by hand: no status or assignee yet."""
    deflated = zlib.compress(b"0140").hex()
    con = sqlite3.connect(path)
    con.executescript(MIGRATIONS[1])
    con.executescript("""
        INSERT INTO sources VALUES (1, '/data/old');
        INSERT INTO videos VALUES (1, 'valid', 'v1', 'mevis', 2, 3, NULL, '{"k": 1}', 1, 1, 0);
        INSERT INTO frames VALUES (1, 0, '00000', 'v1/00000.jpg');
        INSERT INTO tracks VALUES (1, '7', 0, NULL, '{}');
        INSERT INTO expressions VALUES (1, '0', 0, 'the thing', 'referring', 'null', '["7"]', '{}');
        INSERT INTO operations VALUES (1, 'importer', '2024-01-01T00:00:00+00:00', 'import', 'import', 'applied',
                                       NULL, NULL);
        INSERT INTO masks VALUES (1, X'DEFLATED');
        INSERT INTO cells VALUES (1, 0, '7', 'present', 1, 'imported', 1, 1, 1);
        PRAGMA user_version = 1;
    """.replace("DEFLATED", deflated))
    con.commit()
    con.close()


def test_the_migration_runner_upgrades_an_older_database(tmp_path: Path) -> None:
    db = tmp_path / "project.sqlite"
    _v1_database(db)
    with Store.open(tmp_path) as store:
        assert store.con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        info = store.video_info("valid", "v1")
        assert (info.status, info.assignee, info.meta, info.frames[0].path) == \
            ("todo", None, {"k": 1}, Path("/data/old/v1/00000.jpg"))
        cell = store.cell("valid", "v1", "7", 0)
        assert (cell.state, cell.provenance, cell.version, cell.rle) == \
            ("present", "imported", 1, {"size": [2, 3], "counts": "0140"})
        store.set_status("valid", "v1", "reviewed")                      # the new column works
        store.add_flag("valid", "v1", flag_id="u1", source="user", check="user", severity="low", track_ids=["7"],
                       frame_start=0, frame_end=0, message="look")       # and the new tables
        assert [f.flag_id for f in store.flags("valid", "v1")] == ["u1"]
        assert store.integrity_check() == "ok"


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "project.sqlite"
    Store.create(db).close()
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError) as err:
        Store.open(db)
    assert str(err.value) == (f"{db}: project schema version {SCHEMA_VERSION + 1} is newer than this longrvos-data "
                              f"reads ({SCHEMA_VERSION}); upgrade longrvos-data")


def test_an_sqlite_file_that_is_no_project_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "project.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.close()
    with pytest.raises(StoreError, match="an SQLite database that is not a longrvos project"):
        Store.open(db)
    with pytest.raises(StoreError, match="no such project database"):
        Store.open(tmp_path / "nothing")


def test_an_operation_writes_at_least_one_cell(store: Store) -> None:
    with pytest.raises(StoreError, match="^train/v: an operation writes at least one cell$"):
        store.write("train", "v", [], user="ana")
    assert store.history() == []


def test_flags_are_replaced_by_their_source_and_dismissals_outlive_them(store: Store) -> None:
    def audit_run() -> None:
        store.clear_flags("audit")
        for fid, frames in (("f1", (0, 1)), ("f2", (2, 2))):
            store.add_flag("train", "v", flag_id=fid, source="audit", check="tiny_area", severity="high",
                           track_ids=["a"], frame_start=frames[0], frame_end=frames[1], message="tiny", value=3.0,
                           threshold=16.0)
    audit_run()
    store.add_flag("train", "v", flag_id="u1", source="user", check="user", severity="low", track_ids=[],
                   frame_start=1, frame_end=1, message="look", user="ana")
    store.dismiss("f1", user="ana")
    audit_run()                                              # a re-run raises f1 again: it stays dismissed
    assert [f.flag_id for f in store.flags("train", "v")] == ["u1", "f2"]
    dismissed = {f.flag_id: f.dismissed_by for f in store.flags(dismissed=True)}
    assert dismissed == {"f1": "ana", "u1": None, "f2": None}
    with pytest.raises(StoreError, match="severity"):
        store.add_flag("train", "v", flag_id="x", source="user", check="user", severity="urgent", track_ids=[],
                       frame_start=0, frame_end=0, message="")
    with pytest.raises(StoreError, match="the video has 3 frames"):
        store.add_flag("train", "v", flag_id="x", source="user", check="user", severity="low", track_ids=[],
                       frame_start=2, frame_end=3, message="")


def test_expressions_are_added_edited_and_deleted(store: Store) -> None:
    store.add_expression("train", "v", Expression("1", "both", ("a", "b"), "referring"))
    store.update_expression("train", "v", "1", text="nothing", kind="no-target", track_ids=[])
    exps = {e.exp_id: e for e in store.video_info("train", "v").expressions}
    assert (exps["1"].text, exps["1"].kind, exps["1"].track_ids) == ("nothing", "no-target", ())
    with pytest.raises(StoreError, match="exists"):
        store.add_expression("train", "v", Expression("1", "again", (), "no-target"))
    with pytest.raises(StoreError, match="unknown track"):
        store.update_expression("train", "v", "1", track_ids=["zz"])
    store.delete_expression("train", "v", "1")
    with pytest.raises(StoreError, match="no expression"):
        store.delete_expression("train", "v", "1")


def test_a_refused_split_leaves_no_new_track(store: Store) -> None:
    from longrvos_data.annotation import edits
    store.write("train", "v", [Write("a", 1, base=0, rle=rle(A1))], user="ana")
    stale = store.cell("train", "v", "a", 1)
    store.write("train", "v", [Write("a", 1, base=stale.version, rle=rle(A0))], user="bo")
    real_cells = store.cells

    def cells_as_read_before(*args, **kwargs):          # the split read the cell before bo wrote it
        return [c if c.frame != 1 else stale for c in real_cells(*args, **kwargs)]
    store.cells = cells_as_read_before
    with pytest.raises(Conflict):
        edits.split_track(store, "train", "v", "a", 0, 2, user="ana")
    store.cells = real_cells
    assert [t.track_id for t in store.tracks("train", "v")] == ["a", "b"]
    applied, new = edits.split_track(store, "train", "v", "a", 0, 2, user="ana")
    assert new == "1" and pixels(store.cell("train", "v", "1", 1)) == A0.tolist()
    assert store.cell("train", "v", "a", 1).state == "absent"
