"""The secure assistant: clearance-filtered hybrid retrieval, a local LLM, cited and labelled answers.

Layers, bottom up: `chunking` (text -> anchored chunks), `embedder` (the dense model behind one
interface), `index` (chunks, labels and vectors on disk; BM25 + exact dense search restricted to
the labels a user may read), `engine` (the LLM behind one interface), `pipeline` (question ->
retrieval -> prompt -> streamed, cited, labelled answer, stored and audited).
"""
