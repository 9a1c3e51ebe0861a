"""The Keras port of musicnn against the original TF1 graph, and its LiteRT export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from research.common import MSD_MTT_TFLITE, MSD_TFLITE  # noqa: E402
from streammood.features.embedding import MSD_MTT_VGG_TFLITE, MusicnnEmbedder  # noqa: E402
from streammood.training import musicnn  # noqa: E402

pytestmark = pytest.mark.data


TF1_OUTPUTS = {
    "MSD": ["model/Sigmoid", "model/batch_normalization_10/batchnorm/add_1"],
    "MTT": ["model/Sigmoid", "model/batch_normalization_10/batchnorm/add_1"],
    "MSD_vgg": ["model/Sigmoid", "model/Flatten/flatten/Reshape"],
}
"""Tags and embedding nodes of each checkpoint's saved graph."""


def _tf1_graph(which: str, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tag probabilities and embedding from the model's own TF1 graph.

    The graph is the one the authors saved in the checkpoint's ``.meta`` (its forward part: the
    training-only gradient nodes do not import in TF 2), with each variable replaced by its
    checkpoint value and ``is_training`` fed False. This is independent of the Keras definition.
    """
    from tensorflow.core.protobuf import meta_graph_pb2

    folder = musicnn.shipped_checkpoint_dir(which)
    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString((folder / ".meta").read_bytes())
    outputs = TF1_OUTPUTS[which]
    forward = tf.compat.v1.graph_util.extract_sub_graph(meta.graph_def, outputs)
    values = musicnn.read_checkpoint(folder)
    frozen = tf.compat.v1.GraphDef()
    for node in forward.node:
        new = frozen.node.add()
        if node.op in ("VariableV2", "Variable"):
            new.name, new.op = node.name, "Const"
            new.attr["dtype"].type = node.attr["dtype"].type
            new.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(values[node.name]))
        else:
            new.CopyFrom(node)
            if "_output_shapes" in new.attr:
                del new.attr["_output_shapes"]
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(frozen, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        tags, emb = sess.run([f"{o}:0" for o in outputs],
                             {"model/Placeholder:0": patches, "model/Placeholder_2:0": False})
    return tags, emb


@pytest.fixture(scope="module")
def models() -> dict[str, object]:
    return {w: musicnn.load_musicnn(w) for w in musicnn.MODELS}


@pytest.mark.parametrize("which", musicnn.MODELS)
def test_port_matches_original_tf1_graph(which, models, musicnn_patches):
    tags_ref, emb_ref = _tf1_graph(which, musicnn_patches)
    out = models[which](musicnn_patches, training=False)
    tags, emb = out["tags"].numpy(), out["embedding"].numpy()
    assert tags.shape == (8, 50) and emb.shape == (8, musicnn.EMBED_DIMS[which])
    # ~1e-5 relative to the output scale (measured: 5e-7 on tags, 1e-6 on embeddings)
    np.testing.assert_allclose(tags, tags_ref, rtol=0, atol=1e-5 * np.abs(tags_ref).max())
    np.testing.assert_allclose(emb, emb_ref, rtol=0, atol=1e-5 * np.abs(emb_ref).max())
    # the patches are real music: outputs are not constant across clips
    assert np.std(emb_ref, axis=0).mean() > 0.1


@pytest.mark.parametrize(
    "which, n_variables",
    [
        ("MSD", 64),  # 11 batch norms x 4, (8 convolutions + 2 dense) x 2
        ("MSD_vgg", 36),  # 6 batch norms x 4, (5 convolutions + 1 dense) x 2
    ],
)
def test_every_checkpoint_variable_is_used_once(models, which, n_variables):
    variables = musicnn.read_checkpoint(musicnn.shipped_checkpoint_dir(which))
    assert len(variables) == n_variables
    n_weights = sum(len(layer.weights) for layer in models[which].layers)
    assert n_weights == len(variables)


def test_conv1d_kernels_are_reshaped_from_conv2d(models):
    variables = musicnn.read_checkpoint(musicnn.shipped_checkpoint_dir("MSD"))
    conv5 = models["MSD"].get_layer("conv2d_5").get_weights()[0]
    np.testing.assert_array_equal(conv5, variables["conv2d_5/kernel"][:, :, 0, :])


def test_the_two_musicnn_checkpoints_differ(models, musicnn_patches):
    msd = models["MSD"](musicnn_patches[:2])["embedding"].numpy()
    mtt = models["MTT"](musicnn_patches[:2])["embedding"].numpy()
    assert np.abs(msd - mtt).max() > 0.1


def test_embedder_concatenates_in_order(models, musicnn_patches):
    embedder = musicnn.build_embedder(("MSD_vgg", "MTT", "MSD"))
    out = embedder(musicnn_patches[:3]).numpy()
    assert out.shape == (3, 656)
    parts = np.split(out, [256, 456], axis=1)
    for part, which in zip(parts, ("MSD_vgg", "MTT", "MSD"), strict=True):
        ref = models[which](musicnn_patches[:3])["embedding"]
        np.testing.assert_allclose(part, ref, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize(
    "path, which",
    [
        (MSD_MTT_VGG_TFLITE, ("MSD", "MTT", "MSD_vgg")),
        (MSD_MTT_TFLITE, ("MSD", "MTT")),
        (MSD_TFLITE, ("MSD",)),
    ],
)
def test_shipped_tflite_matches_keras(path, which, musicnn_patches):
    keras_out = musicnn.build_embedder(which)(musicnn_patches).numpy()
    lite_out = MusicnnEmbedder(path).embed(musicnn_patches)
    assert lite_out.shape == keras_out.shape == (8, sum(musicnn.EMBED_DIMS[w] for w in which))
    np.testing.assert_allclose(lite_out, keras_out, rtol=0, atol=1e-4 * np.abs(keras_out).max())


def test_export_tflite_roundtrip(tmp_path: Path, musicnn_patches):
    model = musicnn.build_embedder(("MTT",))
    path = musicnn.export_tflite(model, tmp_path / "sub" / "mtt.tflite")
    embedder = MusicnnEmbedder(path, num_threads=2)
    assert embedder.dim == 200
    ref = model(musicnn_patches[:4]).numpy()
    np.testing.assert_allclose(embedder.embed(musicnn_patches[:4]), ref, rtol=0,
                               atol=1e-4 * np.abs(ref).max())


def test_bad_checkpoint_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(musicnn.MusicnnCheckpointError, match="no .index"):
        musicnn.read_checkpoint(tmp_path)
    (tmp_path / "model.index").write_bytes(b"not a checkpoint")
    with pytest.raises(musicnn.MusicnnCheckpointError, match="data file missing"):
        musicnn.read_checkpoint(tmp_path)
    (tmp_path / "model.data-00000-of-00001").write_bytes(b"nor this")
    with pytest.raises(musicnn.MusicnnCheckpointError, match="unreadable"):
        musicnn.read_checkpoint(tmp_path)


def test_checkpoint_that_does_not_fit_is_a_clear_error():
    model = musicnn.build_musicnn(n_outputs=10)
    with pytest.raises(musicnn.MusicnnCheckpointError, match=r"dense_1/kernel has shape"):
        musicnn.load_musicnn_weights(model, musicnn.shipped_checkpoint_dir("MSD"))


def test_bad_model_choice():
    with pytest.raises(musicnn.MusicnnCheckpointError, match="bad musicnn model choice"):
        musicnn.build_embedder(("MSD", "XYZ"))
