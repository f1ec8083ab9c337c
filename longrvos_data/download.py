"""`longrvos download`: fetch a release from the Hugging Face Hub, unpack it, check it.

Two releases are Hugging Face dataset repositories; their split folders land at
``OUT/<split>/`` as in the repository, then `longrvos_data.prepare` unpacks them::

    long_rvos  iSEE-Laboratory/Long-RVOS   <split>/{JPEGImages,Annotations}.tar.gz, meta_expressions.json
    mevis_v2   FudanCVL/MeViSv2            <split>/JPEGImages.tar, mask_dict.json, meta_expressions_v2*.json

The download goes through ``huggingface_hub.snapshot_download`` (resumable, progress bars,
``HF_ENDPOINT`` for a mirror, ``HF_TOKEN`` or ``hf auth login`` for gated repositories),
asking only for the files of the splits wanted. LVOS, MeViS v1, ReVOS and Ref-YouTube-VOS
are not on the Hub: `manual_instructions` says where their files are and where each goes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .errors import LongRVOSError
from .prepare import PrepareReport, archive_spec, prepare, prepared_removed

log = logging.getLogger("longrvos_data")


@dataclass(frozen=True)
class HubRelease:
    """A release published as a Hub dataset repository.

    Attributes:
        title: the dataset's name as its authors write it.
        repo_id: the Hub dataset repository.
        format: the loader that reads the prepared tree.
        splits: the split folders of the repository.
        files: the files each split folder is known to hold (for ``--dry-run``; the download
            takes whatever the folder holds).
    """

    title: str
    repo_id: str
    format: str
    splits: tuple[str, ...]
    files: dict[str, tuple[str, ...]]
    note: str = ""


RELEASES: dict[str, HubRelease] = {
    "long_rvos": HubRelease(
        "Long-RVOS", "iSEE-Laboratory/Long-RVOS", "long_rvos", ("train", "valid", "test"),
        {s: ("JPEGImages.tar.gz", "Annotations.tar.gz", "meta_expressions.json") for s in ("train", "valid", "test")}),
    "mevis_v2": HubRelease(
        "MeViS v2", "FudanCVL/MeViSv2", "mevis", ("train", "valid_u", "valid"),
        {"train": ("JPEGImages.tar", "mask_dict.json", "meta_expressions_v2.json"),
         "valid_u": ("JPEGImages.tar", "mask_dict.json", "meta_expressions_v2.json"),
         "valid": ("JPEGImages.tar", "meta_expressions_v2_release.json")},
        note="which split folders the repository holds is unconfirmed; a split it lacks is reported"),
}
HUB_FILES = ("README.md",)  # the dataset card (licence, terms) is fetched with the splits

# Where the releases that are not on the Hub are, from their own READMEs (none is invented here).
MANUAL: dict[str, str] = {
    "lvos": """\
LVOS (v1 and v2) is not on the Hugging Face Hub. Its README lists the downloads:
  https://github.com/LingyiHongfd/LVOS  (home page: https://lingyihongfd.github.io/lvos.github.io/)
  LVOS v2 images on Google Drive:
    Train https://drive.google.com/file/d/1-ehpl5s0Fd14WwtT-GmWtIWa_BxZl9D6/view
    Eval  https://drive.google.com/file/d/17Hwc__6i2rpF5e2s5OPqoywNxG5bzlcO/view
    Test  https://drive.google.com/file/d/1Vp_y8dSUO4ktYmeBFkIQnmAxK6bl3Eyf/view
  v2 meta JSONs:        https://drive.google.com/drive/folders/1EtTW57QfSkUK3Jl1A_m9D120muA7NG4L
  v2 caption JSONs:     https://drive.google.com/drive/folders/19W_SkeVW8NMv3Npzpbr60Nx5FRRwG4Tx
  (v1, Baidu and Kaggle links: the same README.)
Put the files here:
  the Train / Eval / Test image zips  -> {out}/train.zip, {out}/valid.zip, {out}/test.zip (rename them so)
  <split>_meta.json                   -> {out}/<split>_meta.json (beside the split folders)
  <split>_expression_meta.json (v1), <split>_meta_attribute.json (v2) -> {out}/
then run `longrvos prepare {out}`: it unpacks each zip into {out}/<split>/ (with or without a top
folder of the split's name), giving <split>/JPEGImages/<video>/00000001.jpg and <split>/Annotations/.""",
    "mevis": """\
MeViS v1 is not on the Hugging Face Hub (MeViS v2 is: `longrvos download mevis_v2 {out}`).
The MeViS v1 files are on its CodaLab competition, https://codalab.lisn.upsaclay.fr/competitions/15094
(file names: see the dataset's README).
Put the files here:
  the archive of each split           -> {out}/train.zip, {out}/valid_u.zip, {out}/valid.zip (rename them so)
then run `longrvos prepare {out}`: it unpacks each into {out}/<split>/ (with or without a top folder of
the split's name). The result must read:
  {out}/<split>/JPEGImages/<video>/00000.jpg
  {out}/<split>/meta_expressions.json
  {out}/train/mask_dict.json, {out}/valid_u/mask_dict.json   (valid has none)""",
    "revos": """\
ReVOS is not on the Hugging Face Hub. Its README lists the downloads:
  OneDrive  https://mailsjlueducn-my.sharepoint.com/:f:/g/personal/yancl9918_mails_jlu_edu_cn/Ek3rFeIbNZtAv8kxVxr5n6sBoJZWbVZXHFxWYYxIq7kFKQ?e=Hx2JVd
  Baidu Pan https://pan.baidu.com/s/1StuFnJdLnc5wl3MjndSQ_g?pwd=visa
Put the files here (all in one folder, as the release names them):
  JPEGImages.zip, mask_dict.json, mask_dict_foreground.json,
  meta_expressions_train_.json, meta_expressions_train_sub_.json, meta_expressions_valid_.json -> {out}/
then run `longrvos prepare {out}`: it checks JPEGImages.zip against the SHA256 the README publishes and
unpacks it into {out}/JPEGImages/ (`longrvos validate {out} --checksums` checks the JSON files' sums).""",
    "ref_youtube_vos": """\
Ref-YouTube-VOS is not on the Hugging Face Hub. The files are on its CodaLab competition,
https://codalab.lisn.upsaclay.fr/competitions/13520 (details: see the dataset's README).
Put the files here:
  train.zip, valid.zip, test.zip      -> {out}/
  meta_expressions*.zip               -> {out}/
then run `longrvos prepare {out}`: it unpacks them into {out}/train/{{JPEGImages,Annotations,meta.json}},
{out}/valid/, {out}/test/ and {out}/meta_expressions/<split>/meta_expressions.json (with or without a top
folder in each zip).""",
}
DATASETS = (*RELEASES, *MANUAL)


@dataclass(frozen=True)
class PlannedFile:
    """One file of the repository and where it ends up."""

    repo_path: str
    local_path: Path
    extracted_to: Path | None = None


@dataclass(frozen=True)
class DownloadPlan:
    """What `download` asks the Hub for, and where each file lands."""

    repo_id: str
    endpoint: str
    out: Path
    splits: tuple[str, ...]
    patterns: tuple[str, ...]
    ignore: tuple[str, ...]
    files: tuple[PlannedFile, ...]
    note: str = ""


@dataclass
class DownloadReport:
    """What `download` did: the plan, what `prepare` unpacked, the counts of each split read back."""

    plan: DownloadPlan
    prepared: PrepareReport
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"repo_id": self.plan.repo_id, "out": str(self.plan.out), "patterns": list(self.plan.patterns),
                "prepared": self.prepared.as_dict(), "splits": self.splits}


def manual_instructions(dataset: str, out: str | Path) -> str:
    """Where the files of a release that is not on the Hub are, and where each goes under ``out``.

    Example:
        >>> print(manual_instructions("revos", "data/ReVOS"))
    """
    if dataset not in MANUAL:
        raise LongRVOSError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    return MANUAL[dataset].format(out=Path(out))


def plan(dataset: str, out: str | Path, *, splits: Sequence[str] | None = None) -> DownloadPlan:
    """The repository, the file patterns and where each file lands; touches no network.

    Raises:
        LongRVOSError: the dataset is not on the Hub (see `manual_instructions`), or a split
            is not one of the release's.

    Example:
        >>> plan("long_rvos", "data/long_rvos", splits=["valid"]).patterns
        ('README.md', 'valid/*')
    """
    if dataset not in RELEASES:
        if dataset in MANUAL:
            raise LongRVOSError(f"{dataset} is not on the Hugging Face Hub: `longrvos download {dataset} OUT` "
                                "prints where its files are")
        raise LongRVOSError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    release = RELEASES[dataset]
    out = Path(out)
    chosen = tuple(dict.fromkeys(splits)) if splits else release.splits
    unknown = [s for s in chosen if s not in release.splits]
    if unknown:
        raise LongRVOSError(f"{release.repo_id} has no split {', '.join(map(repr, unknown))}; its splits: "
                            f"{', '.join(release.splits)}")
    from huggingface_hub import constants  # reads HF_ENDPOINT; no network
    removed = prepared_removed(out)
    ignore = tuple(p.relative_to(out).as_posix() for p in removed)
    files = [PlannedFile(name, out / name) for name in HUB_FILES]
    for split in chosen:
        for name in release.files[split]:
            local = out / split / name
            spec = archive_spec(local)
            files.append(PlannedFile(f"{split}/{name}", local, spec.dest if spec else None))
    return DownloadPlan(release.repo_id, constants.ENDPOINT, out, chosen,
                        (*HUB_FILES, *(f"{s}/*" for s in chosen)), ignore, tuple(files), release.note)


def format_plan(p: DownloadPlan) -> str:
    """The plan as `longrvos download --dry-run` prints it."""
    lines = [f"repo: {p.repo_id} (dataset, {p.endpoint}/datasets/{p.repo_id})",
             f"patterns: {' '.join(p.patterns)}"]
    if p.ignore:
        lines.append(f"skipped (extracted earlier, archive removed): {' '.join(p.ignore)}")
    lines.append(f"files (as the release is known to hold them) -> {p.out}:")
    width = max(len(f.repo_path) for f in p.files)
    for f in p.files:
        then = f", then extracted into {f.extracted_to}/ by `longrvos prepare`" if f.extracted_to else ""
        lines.append(f"  {f.repo_path:<{width}}  -> {f.local_path}{then}")
    if p.note:
        lines.append(f"note: {p.note}")
    return "\n".join(lines)


def _fetch(p: DownloadPlan) -> None:
    """``snapshot_download`` of the plan's patterns, every failure turned into one line saying what to do."""
    import huggingface_hub
    from huggingface_hub import errors as hub_errors

    url = f"{p.endpoint}/datasets/{p.repo_id}"
    network = tuple(c for c in (getattr(hub_errors, "HTTPError", None), ConnectionError, TimeoutError) if c)
    try:
        huggingface_hub.snapshot_download(p.repo_id, repo_type="dataset", local_dir=p.out,
                                          allow_patterns=list(p.patterns), ignore_patterns=list(p.ignore) or None)
    except hub_errors.GatedRepoError:
        raise LongRVOSError(f"{p.repo_id} is gated: accept its terms at {url} while logged in, then log in here "
                            "(`hf auth login`, or set HF_TOKEN) and run again") from None
    except hub_errors.RepositoryNotFoundError:
        raise LongRVOSError(f"{p.repo_id} was not found at {p.endpoint} (or is private and no token was "
                            "given): check HF_ENDPOINT, log in (`hf auth login`) and run again") from None
    except hub_errors.RevisionNotFoundError:
        raise LongRVOSError(f"{p.repo_id}: the revision asked for does not exist at {url}") from None
    except hub_errors.LocalEntryNotFoundError:
        raise LongRVOSError(f"cannot reach {p.endpoint} to download {p.repo_id} (no network?): check the "
                            "connection, or set HF_ENDPOINT to a mirror; what was downloaded is kept and a "
                            "re-run resumes") from None
    except hub_errors.HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", "?")
        raise LongRVOSError(f"the Hub answered HTTP {status} for {p.repo_id}: run again later (a re-run "
                            "resumes)") from None
    except network as err:
        raise LongRVOSError(f"the download of {p.repo_id} from {p.endpoint} broke off "
                            f"({type(err).__name__}): run again, it resumes") from None


def download(dataset: str, out: str | Path, *, splits: Sequence[str] | None = None, remove_archives: bool = False,
             progress: bool = False) -> DownloadReport:
    """Download a Hub release into ``out``, unpack it (`prepare`), and read its metadata back.

    Args:
        dataset: ``"long_rvos"`` or ``"mevis_v2"`` (`RELEASES`).
        out: the dataset root; the repository's split folders land at ``out/<split>/``.
        splits: only these split folders (default: all of the release's).
        remove_archives: delete each archive once unpacked.
        progress: progress bars while unpacking (the Hub's own bars show the download).

    Raises:
        LongRVOSError: gated or missing repository, no network, a split the repository lacks;
            one line, naming the repository and what to do. DataError: the unpacked tree does
            not read (file, video and field named).

    Example:
        >>> report = download("long_rvos", "data/long_rvos", splits=["valid"])
        >>> report.splits["valid"]["videos"]
        112
    """
    p = plan(dataset, out, splits=splits)
    p.out.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s (%s) into %s", p.repo_id, " ".join(p.patterns), p.out)
    _fetch(p)
    present = [s for s in p.splits if (p.out / s).is_dir() and any((p.out / s).iterdir())]
    missing = [s for s in p.splits if s not in present]
    if missing and (splits or not present):
        raise LongRVOSError(f"{p.repo_id} has no {', '.join(f'{s}/' for s in missing)} folder: nothing was "
                            f"downloaded for it (see {p.endpoint}/datasets/{p.repo_id}/tree/main)")
    for split in missing:
        log.warning("%s has no %s/ folder; skipped", p.repo_id, split)
    prepared = prepare(p.out, remove_archives=remove_archives, progress=progress)
    from .summary import summarise  # the metadata-level check: files present, JSON and ids valid
    report = DownloadReport(p, prepared)
    fmt = RELEASES[dataset].format
    for split in present:
        summary = summarise(p.out, format=fmt, split=split)
        report.splits[split] = {k: summary[k] for k in ("videos", "frames", "tracks", "expressions")}
    return report
