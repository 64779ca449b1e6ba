"""The taxolens web app: a photo in, every organism boxed, named and explained, in three languages.

A thin layer over ``pipeline/`` and ``review/``, free of decision and record logic of its own:

- ``text``: the interface's words by language (``configs/ui.yaml``);
- ``cards``: HTML of answers and species cards (pure: records in, HTML out);
- ``identify``: the Identify and Several photos pages (a photo or many through the pipeline);
- ``review``: the Review page (the store's queue, an expert's answers);
- ``layout``: the Blocks, their components by name, the events, and the language switch;
- ``main``: ``taxolens app`` (``gradio_app.py`` is its short entry point).
"""
