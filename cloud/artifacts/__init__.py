"""Artifacts: agent releases, device firmware and ONNX models, uploaded once, stored by
sha256, their manifests signed with the release key (decision 0036).

- ``storage``: the ``ArtifactStorage`` interface, the local-directory store and the
  choice between the stores; ``s3``: the S3-compatible store (boto3, optional);
- ``service``: upload (stream, hash, sign, record), look-ups, the release key;
- ``errors``: ``ArtifactError`` and its subclasses.
The routes are ``cloud.api.routes.artifacts``; the manifest format ``protocols.artifacts``;
the box side ``edge_agent.kernel.artifacts``.
"""
