"""`longrvos push`: publish an hf output (`longrvos convert --to hf`) to the Hugging Face Hub.

Before anything leaves the machine the output is checked: a complete conversion, frames
embedded (linked frames would publish paths to files the Hub never gets), and the source
licence read from the card; a non-commercial or unstated licence gives a warning. The one
network call is `_upload` (``HfApi.create_repo`` + ``HfApi.upload_folder``), so that tests
replace it.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .converters.hf import LICENCES, SourceLicence, licence_for
from .errors import LongRVOSError
from .loaders.hf import HFPaths, read_card
from .sidecar import incomplete_splits

log = logging.getLogger("longrvos_data")

#: What is uploaded: the card and the shards; the resume state stays local.
UPLOAD_PATTERNS: tuple[str, ...] = (HFPaths.CARD, f"{HFPaths.DATA}/**")


class LicenceWarning(UserWarning):
    """The source's licence restricts redistribution (non-commercial) or is not stated."""


@dataclass(frozen=True)
class PushPlan:
    """What `push` would upload and what the user must know first.

    Attributes:
        folder: the output root.
        licences: the licence entry of each source dataset in the output.
        warnings: one line per licence that restricts or does not state redistribution.
    """

    folder: Path
    licences: tuple[SourceLicence, ...]
    warnings: tuple[str, ...] = ()

    @property
    def non_commercial(self) -> bool:
        return any(lic.non_commercial for lic in self.licences)


@dataclass(frozen=True)
class PushResult:
    """Where the dataset went."""

    repo_id: str
    url: str
    warnings: tuple[str, ...] = field(default_factory=tuple)


def plan_push(out: str | Path) -> PushPlan:
    """Check that ``out`` can be published and collect the licence warnings.

    Raises:
        DataError: ``out`` is no hf output (no card, missing shards).
        LongRVOSError: the conversion is incomplete, or its frames are linked, not embedded.

    Example:
        >>> plan_push("out/mevis_hf").warnings[0]
        'MeViS: CC BY-NC-SA 4.0 ...: non-commercial use only ...'
    """
    card = read_card(out)
    if incomplete_splits(card.root):  # a finished output keeps no resume state
        raise LongRVOSError(f"{card.root}: the conversion did not finish; run the same convert command again "
                            "to complete it before pushing")
    if card.link_frames:
        raise LongRVOSError(f"{card.root}: frames are linked to {card.source_root}, not embedded; the Hub would get "
                            "paths without images. Convert again without --link-frames to publish")
    sources = [d for d in card.section.get("source_datasets") or [] if isinstance(d, str)]
    if not sources and card.section.get("source_format"):
        sources = [card.section["source_format"]]
    licences = tuple(licence_for(s) for s in sources) or (licence_for(None),)
    warnings = []
    for source, lic in zip(sources or [None], licences):
        if lic.non_commercial:
            warnings.append(f"{lic.name}: {lic.text} Publishing it does not change that: keep the repository's "
                            "licence and check that you may redistribute the data.")
        elif source not in LICENCES or lic.hub_id in ("unknown", "other"):
            warnings.append(f"{lic.name if source in LICENCES else source or 'the source'}: {lic.text}")
    return PushPlan(folder=card.root, licences=licences, warnings=tuple(warnings))


def _upload(folder: Path, repo_id: str, *, token: str | None, private: bool, revision: str | None,
            commit_message: str) -> str:
    """Create the dataset repository if needed and upload the card and shards; the URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=folder, revision=revision,
                             commit_message=commit_message, allow_patterns=list(UPLOAD_PATTERNS))
    return str(getattr(info, "commit_url", info))


def push(out: str | Path, repo_id: str, *, token: str | None = None, private: bool = False,
         revision: str | None = None, commit_message: str | None = None) -> PushResult:
    """Upload an hf output to ``repo_id`` (a dataset repository, created when missing).

    A non-commercial (or unstated) source licence is issued as a `LicenceWarning` and
    returned in ``result.warnings``; it does not stop the upload.

    Args:
        out: the output root of `longrvos convert --to hf`.
        repo_id: ``"user/name"``.
        token: a Hub token; the cached login when None.
        private: create the repository as private.
        revision: branch to push to.
        commit_message: defaults to "Upload <source> with longrvos-data".

    Raises:
        DataError, LongRVOSError: see `plan_push`.

    Example:
        >>> push("out/long_rvos_hf", "me/long-rvos", private=True).url
        'https://huggingface.co/datasets/me/long-rvos/commit/...'
    """
    if repo_id.count("/") > 1 or not repo_id.strip("/"):
        raise LongRVOSError(f"repository id {repo_id!r} is not of the form 'user/name'")
    plan = plan_push(out)
    for line in plan.warnings:
        warnings.warn(line, LicenceWarning, stacklevel=2)
    names = ", ".join(lic.name for lic in plan.licences)
    url = _upload(plan.folder, repo_id, token=token, private=private, revision=revision,
                  commit_message=commit_message or f"Upload {names} with longrvos-data")
    return PushResult(repo_id=repo_id, url=url, warnings=plan.warnings)


__all__ = ["LicenceWarning", "PushPlan", "PushResult", "UPLOAD_PATTERNS", "plan_push", "push"]
