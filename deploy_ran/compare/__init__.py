"""Agreement and accuracy, judged in one room.

``paired`` holds the statistics every accuracy comparison reports: Wilson intervals for one
accuracy, and for two predictions on the same images the changed-prediction counts, an exact
McNemar test and a 95 % interval on the difference.
"""
