"""Help headings for the single options every command shares, so ``--help`` reads the same way
everywhere: Model (weights, size, classes), Runner (device, providers, threads), Data (what to
run on), Output (where results go, JSON). An option group's fields take the group's heading
instead (the group copies the declaration); ``--output`` carries its heading itself."""

from __future__ import annotations

import typing

import cli_args as o

PANELS = {
    "Model": (o.CheckpointOpt, o.ImageSizeOpt, o.NumClassesOpt, o.CandidateCheckpointOpt),
    "Runner": (o.DeviceOpt, o.ProviderOpt, o.ThreadsOpt, o.TorchPrecisionOpt),
    "Data": (
        o.VerifyDataOpt,
        o.CountOpt,
        o.SeedOpt,
        o.ImagesOpt,
        o.LabelsOpt,
        o.EvalDataOpt,
        o.BenchDataOpt,
        o.EvalCountOpt,
    ),  # fmt: skip
    "Output": (o.AsJson, o.NoPlotOpt, o.PlotOpt, o.RepoOutputOpt, o.WorkdirOpt),
}


def _place() -> None:
    for panel, decls in PANELS.items():
        for decl in decls:
            for info in typing.get_args(decl)[1:]:
                info.rich_help_panel = panel


_place()
