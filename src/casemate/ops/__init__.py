"""Operations: the offline bundle (`casemate bundle`), installation checks (`casemate doctor`) and
the pinned-model verifier every capability calls before loading a model."""
