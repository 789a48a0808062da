"""Every table and report the toolkit prints, one module per command.

Shared by the command line and the demo pipeline so that both print the same thing; the numbers
come from the library (:mod:`deploy_ran.verify`, :mod:`deploy_ran.bench`, the conversion results).
Each function returns renderables (tables and markup lines) and prints nothing itself. Every
string that comes from a user, a file or a library message is escaped
(:func:`~deploy_ran.tables.cells.esc`); only the tables' own ``[green]``-style tags are markup.

The modules: :mod:`~deploy_ran.tables.cells` (how a value shows in a cell),
:mod:`~deploy_ran.tables.bench`, :mod:`~deploy_ran.tables.verify` (also every conversion's check),
:mod:`~deploy_ran.tables.convert` (export, FP16, engine), :mod:`~deploy_ran.tables.calibrate`, :mod:`~deploy_ran.tables.evaluate`,
:mod:`~deploy_ran.tables.models`, :mod:`~deploy_ran.tables.inspect` (and ``doctor``),
:mod:`~deploy_ran.tables.visualize`, :mod:`~deploy_ran.tables.infer` and
:mod:`~deploy_ran.tables.triton`.
"""

from deploy_ran.tables.bench import bench_report, bench_table, environment_table
from deploy_ran.tables.calibrate import quantize_report
from deploy_ran.tables.convert import conversion_report, engine_report, export_report, fp16_report
from deploy_ran.tables.evaluate import evaluate_report, markdown_table
from deploy_ran.tables.infer import infer_summary
from deploy_ran.tables.inspect import doctor_table, inspect_report
from deploy_ran.tables.models import model_rows, models_report
from deploy_ran.tables.triton import triton_summary
from deploy_ran.tables.verify import check_tables, verify_report, verify_tables
from deploy_ran.tables.visualize import attention_report

__all__ = [
    "attention_report",
    "bench_report",
    "bench_table",
    "check_tables",
    "conversion_report",
    "doctor_table",
    "engine_report",
    "environment_table",
    "evaluate_report",
    "export_report",
    "fp16_report",
    "infer_summary",
    "markdown_table",
    "inspect_report",
    "model_rows",
    "models_report",
    "quantize_report",
    "triton_summary",
    "verify_report",
    "verify_tables",
]
