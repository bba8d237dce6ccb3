"""foveanet.train: the training loop, metrics, callbacks, checkpoints and resume.

::

    import foveanet as fv
    import foveanet.train

    history = fv.train.fit(model, train_loader, val_loader, epochs=10, optimizer="sgd", lr=0.1,
                           optimizer_options={"momentum": 0.9}, l2=1e-4, run_dir="runs/mlp")
    # interrupted? the same call with resume="runs/mlp" continues, bit for bit.

    trainer = fv.train.Trainer(model, opt, scheduler=sched, callbacks=[
        fv.train.EarlyStopping(patience=5, restore_best=True)], run_dir="runs/cnn")
    trainer.fit(train_loader, val_loader, epochs=30)
    print(trainer.evaluate(test_loader)["accuracy"])

    fv.train.Trainer(unet, opt, task=fv.train.tasks.Segmentation(ignore_index=255))  # mean IoU

    class GAN(fv.train.Trainer):          # several models: override train_step (see trainer)
        def train_step(self, batch): ...
    GAN(models={"generator": G, "discriminator": D}, optimizers={"generator": opt_g,
        "discriminator": opt_d}, schedulers={...}, run_dir="runs/gan").fit(loader, epochs=5)

Modules: ``trainer`` (Trainer, fit, TrainingDiverged: the loop itself is in its docstring),
``tasks`` (Task, Classification, Regression, Segmentation, Reconstruction: a task's loss and its
epoch metrics), ``callbacks`` (Checkpoint, BestCheckpoint, EarlyStopping, LRSchedulerCallback,
CSVLogger, JSONLLogger), ``metrics`` (accuracy, top-k, confusion matrix, evaluate),
``checkpoint`` (the run directory format), ``io`` (atomic writes, safetensors, strict JSON: no
pickle anywhere), ``history``, ``progress`` (the rich progress bar / plain log lines),
``image_metrics`` (PSNR, SSIM, segmentation IoU / Dice, a Fréchet distance in a foveanet
classifier's feature space).
"""
from . import tasks  # noqa: F401
from . import forecast  # noqa: F401  (registers the forecast task)
from . import language  # noqa: F401  (registers the language_model task)
from .callbacks import (BestCheckpoint, Callback, Checkpoint, CSVLogger, EarlyStopping,  # noqa: F401
                        JSONLLogger, LambdaCallback, LRSchedulerCallback)
from .checkpoint import (FORMAT_VERSION, load_checkpoint, read_best, read_checkpoint,  # noqa: F401
                         save_checkpoint)
from .history import History  # noqa: F401
from .io import CheckpointError, atomic_write, load_state_dict, save_state_dict  # noqa: F401
from .metrics import (AverageMeter, RunningAverage, accuracy, confusion_matrix, evaluate,  # noqa: F401
                      per_class_accuracy, topk_accuracy)
from .progress import ProgressCallback  # noqa: F401
from .tasks import Task  # noqa: F401
from .trainer import Trainer, TrainingDiverged, fit, penalized_parameters  # noqa: F401
from .evaluation import compute_test_metrics, predict_loader  # noqa: F401
from .run import ConfigError, Run, RunError, load_run  # noqa: F401
from . import image_metrics  # noqa: F401
from .image_metrics import (ClassifierFeatures, FrechetScore, confusion_from_predictions,  # noqa: F401
                            feature_frechet, frechet_distance, psnr, segmentation_scores, ssim)
from .kernels_callback import KernelSnapshots  # noqa: F401
from .tensorboard import TensorBoard  # noqa: F401

__all__ = [
    "Trainer", "fit", "TrainingDiverged", "penalized_parameters", "History",
    "Callback", "LambdaCallback", "Checkpoint", "BestCheckpoint", "EarlyStopping",
    "LRSchedulerCallback", "CSVLogger", "JSONLLogger", "ProgressCallback",
    "accuracy", "topk_accuracy", "confusion_matrix", "per_class_accuracy", "RunningAverage",
    "AverageMeter", "evaluate",
    "save_state_dict", "load_state_dict", "atomic_write", "save_checkpoint", "load_checkpoint",
    "read_checkpoint", "read_best", "CheckpointError", "FORMAT_VERSION", "tasks", "Task",
]
__all__ += ["predict_loader", "compute_test_metrics", "load_run", "Run", "RunError", "ConfigError"]
__all__ += ["image_metrics", "psnr", "ssim", "segmentation_scores", "confusion_from_predictions",
            "frechet_distance", "ClassifierFeatures", "feature_frechet", "FrechetScore"]
__all__ += ["TensorBoard", "KernelSnapshots"]
