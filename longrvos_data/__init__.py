"""longrvos-data: read, convert, score and annotate long-term RVOS datasets."""
from .errors import DataError, FormatDetectionError, LongRVOSError, Problem
from .loaders import Dataset, detect_format, load
from .schema import KINDS, Expression, Frame, MaskSource, Track, Video

__version__ = "0.1.0"

__all__ = ["DataError", "Dataset", "Expression", "FormatDetectionError", "Frame", "KINDS", "LongRVOSError",
           "MaskSource", "Problem", "Track", "Video", "detect_format", "load", "__version__"]
