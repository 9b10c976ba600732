"""Flow templates, deployed through the repository's ``prefect.yaml``.

Import a template from its module (``flowkit_prefect.flows.rag_answer``) or from the package
root (``from flowkit_prefect import rag_answer``). This package imports nothing itself, so a
flow-run process loads only the template it runs.
"""
