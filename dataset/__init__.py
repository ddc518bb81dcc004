"""The dataset format (docs/dataset.md): its names, its writer and its checked readers.

``expert.collect`` writes datasets, ``dataset.verify`` checks them, ``bc.data`` reads them for
training and ``dataset.synthetic`` makes small ones without flying the env; all of them go through
this package, so the format is described in one place. Every problem with a dataset is a
``DatasetError`` (a ``configflags.UserError``) with a one-line message naming the file.

Two modules are imported on demand, as they fly the env: ``dataset.replay`` (the ends of a
format-1 run, recovered by replaying it) and ``dataset.minari_io`` (Minari export and import,
with the ``minari`` extra).
"""

from dataset.atomic import temp_files
from dataset.format import (
    COMPRESSIONS,
    FINAL_FIELDS,
    FORMAT_VERSION,
    LABEL_FIELDS,
    MANIFEST,
    MANIFEST_KEYS,
    OUTCOMES,
    READABLE_VERSIONS,
    REQUIRED_ATTRS,
    RUN_ENTRY_KEYS,
    RUNS_DIR,
    SPLITS,
    STEP_FIELDS,
    TRAINING_ENTRY_KEYS,
    TRAINING_KEYS,
    VIDEOS_DIR,
    DatasetError,
    file_label,
    run_name,
    run_path,
    step_fields,
)
from dataset.reader import (
    RecordedEnv,
    check_ends,
    check_final,
    check_frame_shape,
    check_run,
    check_steps,
    check_values,
    check_version,
    error_text,
    load_run,
    open_run_file,
    read_manifest,
    read_run_attrs,
    recorded_env,
    run_file,
    step_datasets,
)
from dataset.writer import RunWriter, cut_run

__all__ = [
    "COMPRESSIONS",
    "FINAL_FIELDS",
    "FORMAT_VERSION",
    "LABEL_FIELDS",
    "MANIFEST",
    "MANIFEST_KEYS",
    "OUTCOMES",
    "READABLE_VERSIONS",
    "REQUIRED_ATTRS",
    "RUNS_DIR",
    "RUN_ENTRY_KEYS",
    "SPLITS",
    "STEP_FIELDS",
    "TRAINING_ENTRY_KEYS",
    "TRAINING_KEYS",
    "VIDEOS_DIR",
    "DatasetError",
    "RecordedEnv",
    "RunWriter",
    "check_ends",
    "check_final",
    "check_frame_shape",
    "check_run",
    "check_steps",
    "check_values",
    "check_version",
    "cut_run",
    "error_text",
    "file_label",
    "load_run",
    "open_run_file",
    "read_manifest",
    "read_run_attrs",
    "recorded_env",
    "run_file",
    "run_name",
    "run_path",
    "step_datasets",
    "step_fields",
    "temp_files",
]
