"""One process of a test_distributed training: trains the small CNN with
`ActivationLogger` and prints, as its last line, a JSON report of what it did.

Run as `python tests/distributed_fit.py SPEC`, SPEC a JSON object:
- `log_dir`: where to log;
- `setting`: `"plain"` (one device), `"mirrored"` (`tf.distribute.MirroredStrategy`
  over two logical CPU devices, made here before TensorFlow starts its devices)
  or `"data_parallel"` (`keras.distribution.DataParallel` over every CPU device
  JAX has; give it two with `XLA_FLAGS=--xla_force_host_platform_device_count=2`);
- `logger`: more arguments for `ActivationLogger` (`chief`, `run_name`);
- `torch_group`: `{"address", "rank", "size"}` to initialize a torch process
  group (gloo) before training, as a torch script does;
- `jax_group`: `{"address", "rank", "size"}` to initialize `jax.distributed`
  before training, as a multi-host JAX script does.

The report holds the process id (event file names carry it), what the session
decided, how often the extraction model ran, the optimizer's iterations, and the
model's own outputs on the probe at every state the logger logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

LAYERS = ["conv2", "logits"]
EPOCHS = 2


def main(spec: dict) -> dict:
    setting = spec["setting"]
    if setting == "mirrored":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
    group = spec.get("torch_group")
    if group:
        import torch.distributed as dist

        dist.init_process_group(
            "gloo", init_method=group["address"], rank=group["rank"], world_size=group["size"]
        )
    jax_group = spec.get("jax_group")
    if jax_group:
        import jax

        jax.distributed.initialize(
            coordinator_address=jax_group["address"],
            num_processes=jax_group["size"],
            process_id=jax_group["rank"],
        )
    import keras

    from tb_activations import ActivationLogger

    from recorded import small_cnn, stripes

    keras.utils.set_random_seed(0)
    scope = contextlib.nullcontext
    replicas = 1
    if setting == "mirrored":
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        scope, replicas = strategy.scope, strategy.num_replicas_in_sync
    elif setting == "data_parallel":
        devices = keras.distribution.list_devices("cpu")
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        replicas = len(devices)
    with scope():
        model = small_cnn()
    x, y = stripes(n=96)
    probe = x[:2]
    logger = ActivationLogger(
        spec["log_dir"],
        probe,
        LAYERS,
        batch_freq=1,
        batch_epochs=EPOCHS,
        verbose=0,
        **spec.get("logger", {}),
    )
    # Binding before fit (fit binds the same model again, a no-op) lets the
    # extraction model's every call be counted from here.
    logger.session.bind(model)
    extractor = logger.session.extractor
    predict_on_batch = extractor.predict_on_batch
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return predict_on_batch(*args, **kwargs)

    extractor.predict_on_batch = counted

    conv2 = keras.Model(model.input, model.get_layer("conv2").output)
    references: dict[int, dict] = {}

    class Reference(keras.callbacks.Callback):
        """The trained model's own forward pass, at each state the logger logs."""

        def on_train_begin(self, logs=None):
            self._take()

        def on_train_batch_end(self, batch, logs=None):
            self._take()

        def _take(self):
            # `self.model`, not `model`: on JAX, that brings the training
            # state back into the model's variables.
            trained = self.model
            step = int(keras.ops.convert_to_numpy(trained.optimizer.iterations))
            references[step] = {
                "conv2": keras.ops.convert_to_numpy(conv2(probe, training=False)).tolist(),
                "logits": keras.ops.convert_to_numpy(trained(probe, training=False)).tolist(),
            }

    # Under tf.distribute, fit inside the scope, as tutorials do: the
    # callbacks then run in the strategy's cross-replica context.
    with scope():
        model.fit(x, y, batch_size=32, epochs=EPOCHS, callbacks=[logger, Reference()], verbose=0)
    process = logger.session.process
    if group:
        dist.destroy_process_group()
    if jax_group:
        jax.distributed.shutdown()
    return {
        "pid": os.getpid(),
        "chief": process.chief,
        "source": process.source,
        "forward_calls": len(calls),
        "iterations": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "replicas": replicas,
        "backend": keras.backend.backend(),
        "references": references,
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
