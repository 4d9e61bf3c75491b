"""Typed samples that flow from tokenization into batching."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TokenizedSample:
    """One sequence. `loss_mask[t] == 1` where token t is a training target (a response token)."""

    input_ids: list[int]
    loss_mask: list[int]
    source: str


@dataclass(frozen=True)
class SampleGroup:
    """One SFT record: its rows, usually one; a chat record whose template rewrites earlier turns trains
    as several (data/chat.py), which share their common prefix in the packed forward."""

    samples: tuple[TokenizedSample, ...]
    source: str

    @property
    def n_tokens(self) -> int:
        """Every row in full, whether or not a forward shares their prefix."""
        return sum(len(s.input_ids) for s in self.samples)


@dataclass(frozen=True)
class TokenizedPair:
    """A preference pair: both sides share the prompt; `margin` is 0 unless the data gives one."""

    chosen: TokenizedSample
    rejected: TokenizedSample
    margin: float
    source: str

    @property
    def n_tokens(self) -> int:
        """Both sides in full: the throughput unit, whether or not a forward shares the prompt."""
        return len(self.chosen.input_ids) + len(self.rejected.input_ids)


@dataclass(frozen=True)
class TokenizedUnpaired:
    """A KTO sample: the completion under its own prompt, the same completion under another record's
    prompt (`kl_sample`, for the batch KL reference point), and whether it is desirable."""

    sample: TokenizedSample
    kl_sample: TokenizedSample
    label: bool
    source: str


@dataclass
class TokenizeStats:
    """What tokenization did to the data; logged once at the start of a run."""

    records: int = 0
    kept: int = 0
    truncated: int = 0
    dropped_empty_after_truncation: int = 0
    skipped_identical_pairs: int = 0
    multi_row_records: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {
            "records": self.records,
            "kept": self.kept,
            "truncated": self.truncated,
            "dropped_empty_after_truncation": self.dropped_empty_after_truncation,
            "skipped_identical_pairs": self.skipped_identical_pairs,
            "multi_row_records": self.multi_row_records,
        }
