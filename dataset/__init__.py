"""The dataset format (docs/dataset.md): its names, its writer and its checked readers.

``expert.collect`` writes datasets, ``expert.verify`` checks them, ``bc.data`` reads them for
training and ``dataset.synthetic`` makes small ones without flying the env; all of them go through
this package, so the format is described in one place. Every problem with a dataset is a
``DatasetError`` (a ``configflags.UserError``) with a one-line message naming the file.
"""

from dataset.atomic import commit_file, temp_files, temp_path, write_json_atomic
from dataset.format import (
    COMPRESSIONS,
    FORMAT_VERSION,
    LABEL_FIELDS,
    MANIFEST,
    MANIFEST_KEYS,
    OUTCOMES,
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
)
from dataset.reader import (
    RecordedEnv,
    check_frame_shape,
    check_run,
    check_steps,
    check_values,
    error_text,
    load_run,
    open_run_file,
    read_manifest,
    read_run_attrs,
    recorded_env,
    run_file,
    step_datasets,
)
from dataset.writer import RunWriter

__all__ = [
    "COMPRESSIONS",
    "FORMAT_VERSION",
    "LABEL_FIELDS",
    "MANIFEST",
    "MANIFEST_KEYS",
    "OUTCOMES",
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
    "check_frame_shape",
    "check_run",
    "check_steps",
    "check_values",
    "commit_file",
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
    "temp_files",
    "temp_path",
    "write_json_atomic",
]
