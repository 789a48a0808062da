"""Agreement and accuracy, judged in one room.

* ``criteria``: every threshold, per precision and per output kind (``criteria_for``);
* ``metrics``: the numbers (relative L2, cosine, PSNR, top-k agreement, centred cosines);
* ``kinds``: what kind an output is and the measurements its kind adds;
* ``judge``: the agreement table of two sets of arrays and its checks (``compare_outputs``);
* ``results``: what a comparison hands back (``Comparison``, ``VerifyResult``, ``as_dict``);
* ``run``: two runners side by side over batches (``compare``), used by ``verify``;
* ``runner_checks``: ``RunnerChecks``, the export / FP16 / INT8 checks a conversion asks for;
* ``paired``: the statistics every accuracy comparison reports: Wilson intervals for one
  accuracy, and for two predictions on the same images the changed-prediction counts, an exact
  McNemar test and a 95 % interval on the difference.

Nothing is imported here, so the floors below the runners (calibration) can import ``judge``
and ``criteria`` without pulling in ``run`` (which needs the runners).
"""
