"""Dataset projects, ingestion, the caption editor and caption files.

The modules import nothing from the WebUI or Gradio. The UI calls:

- ``projects.ProjectStore`` for projects and versions, ``projects.version_dataset_dir`` for training;
- ``ingest.ingest`` to add dropped files, folders and zips;
- ``files.CaptionStore`` to load and save captions, ``editor.Editor`` to edit them;
- ``export.export_kohya`` / ``export.export_zip``.
"""
