"""Evaluation with each dataset's official protocol (Long-RVOS, MeViS, ReVOS, LVOS).

Missing predictions cost by default (``missing="strict"``); ``missing="official"`` handles
them as each official script does, for parity with the official numbers. Every report
carries both (``overall``, ``overall_official``) and lists its deliberate differences from
the official script (``differences``).

Example:
    >>> from longrvos_data.eval import evaluate
    >>> report = evaluate("data/mevis", "out/preds", protocol="mevis", split="valid_u", workers=4)
    >>> report.write("out/REPORT.json")
"""
from .metrics import MaskInfo, boundary_radius, disk, jf, score_frame, seg2bmap, temporal_ious
from .pack import PackResult, pack
from .protocols import POLICIES, PROTOCOLS, get_protocol, unseen_videos
from .report import EvalReport
from .runner import evaluate

__all__ = ["EvalReport", "MaskInfo", "POLICIES", "PROTOCOLS", "PackResult", "boundary_radius", "disk", "evaluate",
           "get_protocol", "jf", "pack", "score_frame", "seg2bmap", "temporal_ious", "unseen_videos"]
