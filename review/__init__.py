"""Expert review: every prediction kept, a queue ordered by need, corrections back into training and out.

Out to GBIF as Darwin Core and Camtrap DP. Knows core, annotations and the classifier's metrics; no app.
"""
