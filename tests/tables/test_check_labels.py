"""A check that ran one output at two batch sizes shows two distinguishable rows, not two
identical ``logits (logits)`` rows."""

from __future__ import annotations

from types import SimpleNamespace as Row

from deploy_ran.tables.verify import _check_labels, _output_labels

OUTPUTS = [
    Row(name="logits", kind="logits", shape=(1, 10)),
    Row(name="logits", kind="logits", shape=(3, 10)),
    Row(name="maps", kind="attention", shape=(1, 1, 8, 8)),
]


def test_outputs_run_at_two_batches_are_labelled_by_batch_and_kind_only_when_it_adds():
    assert _output_labels(OUTPUTS) == ["logits, batch 1", "logits, batch 3", "maps (attention)"]
    assert len(set(_output_labels(OUTPUTS))) == len(OUTPUTS)


def test_a_criterion_checked_per_batch_is_labelled_by_its_batch():
    checks = [
        Row(output="logits", criterion="max_rel_l2"),
        Row(output="logits", criterion="max_rel_l2"),
        Row(output="logits", criterion="min_input_centred_cosine"),
    ]
    assert _check_labels(checks, OUTPUTS) == ["logits, batch 1", "logits, batch 3", "logits"]
