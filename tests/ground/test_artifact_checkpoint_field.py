"""ArtifactInfo's checkpoint field: the seed is the caller's, not a constant of this base module."""

from __future__ import annotations

from deploy_ran.artifacts import ArtifactInfo


def test_seed_given_by_the_exporter_survives_a_round_trip():
    props = ArtifactInfo(model="ran56_cifar", init_seed=7).to_props()
    assert props["checkpoint_sha256"] == "none (seeded random initialisation, seed 7)"
    back = ArtifactInfo.from_props(props)
    assert back.init_seed == 7 and back.checkpoint_sha256 is None
    # A converted file (FP16, INT8) re-serialises what it read: the seed is kept, not re-invented.
    assert back.to_props()["checkpoint_sha256"] == props["checkpoint_sha256"]


def test_checkpoint_hash_wins_and_unknown_origin_claims_no_seed():
    info = ArtifactInfo.from_props(ArtifactInfo(checkpoint_sha256="ab" * 32).to_props())
    assert info.checkpoint_sha256 == "ab" * 32 and info.init_seed is None
    foreign = ArtifactInfo.from_props({})  # a file the toolkit did not write
    assert "checkpoint_sha256" not in foreign.to_props()
    assert foreign.init_seed is None
