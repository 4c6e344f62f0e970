"""The part of the KubeRay v1 CRDs (ray.io/v1 RayCluster, RayJob; KubeRay 1.5) that our
manifests use, as JSON Schema: field names, types, enums and required fields. Unknown fields
are rejected at every level we describe, so a typo (``minReplica``) fails here, not in a user's
cluster. Pod templates are checked separately against the Kubernetes schema."""

from __future__ import annotations

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_TEMPLATE = {
    "type": "object",
    "required": ["spec"],
    "properties": {"metadata": {"type": "object"}, "spec": {"type": "object"}},
    "additionalProperties": False,
}
_HEAD = {
    "type": "object",
    "required": ["template"],
    "properties": {
        "rayStartParams": _STR_MAP,
        "serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
        "enableIngress": {"type": "boolean"},
        "headService": {"type": "object"},
        "template": _TEMPLATE,
    },
    "additionalProperties": False,
}
_WORKER = {
    "type": "object",
    "required": ["groupName", "template"],
    "properties": {
        "groupName": {"type": "string", "minLength": 1},
        "replicas": {"type": "integer", "minimum": 0},
        "minReplicas": {"type": "integer", "minimum": 0},
        "maxReplicas": {"type": "integer", "minimum": 0},
        "numOfHosts": {"type": "integer", "minimum": 1},
        "idleTimeoutSeconds": {"type": "integer"},
        "suspend": {"type": "boolean"},
        "rayStartParams": _STR_MAP,
        "template": _TEMPLATE,
        "scaleStrategy": {"type": "object"},
    },
    "additionalProperties": False,
}
CLUSTER_SPEC = {
    "type": "object",
    "required": ["headGroupSpec"],
    "properties": {
        "rayVersion": {"type": "string"},
        "authOptions": {
            "type": "object",
            "properties": {"mode": {"enum": ["disabled", "token"]}},
            "additionalProperties": False,
        },
        "enableInTreeAutoscaling": {"type": "boolean"},
        "autoscalerOptions": {
            "type": "object",
            "properties": {
                "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
                "idleTimeoutSeconds": {"type": "integer", "minimum": 0},
                "version": {"enum": ["v1", "v2"]},
                "image": {"type": "string"},
                "imagePullPolicy": {"type": "string"},
                "resources": {"type": "object"},
                "env": {"type": "array"},
                "envFrom": {"type": "array"},
            },
            "additionalProperties": False,
        },
        "headGroupSpec": _HEAD,
        "workerGroupSpecs": {"type": "array", "items": _WORKER},
        "headServiceAnnotations": _STR_MAP,
        "suspend": {"type": "boolean"},
        "managedBy": {"type": "string"},
        "gcsFaultToleranceOptions": {"type": "object"},
    },
    "additionalProperties": False,
}
_META = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "namespace": {"type": "string"},
        "labels": _STR_MAP,
        "annotations": _STR_MAP,
    },
    "additionalProperties": False,
}


def _object(kind: str, spec: dict) -> dict:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "ray.io/v1"},
            "kind": {"const": kind},
            "metadata": _META,
            "spec": spec,
        },
        "additionalProperties": False,
    }


RAYCLUSTER = _object("RayCluster", CLUSTER_SPEC)
RAYJOB = _object(
    "RayJob",
    {
        "type": "object",
        "required": ["entrypoint"],
        "properties": {
            "entrypoint": {"type": "string", "minLength": 1},
            "runtimeEnvYAML": {"type": "string"},
            "jobId": {"type": "string"},
            "submissionMode": {
                "enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]
            },
            "submitterConfig": {
                "type": "object",
                "properties": {"backoffLimit": {"type": "integer", "minimum": 0}},
                "additionalProperties": False,
            },
            "submitterPodTemplate": {"type": "object"},
            "entrypointNumCpus": {"type": "number"},
            "entrypointNumGpus": {"type": "number"},
            "entrypointResources": {"type": "string"},
            "shutdownAfterJobFinishes": {"type": "boolean"},
            "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
            "activeDeadlineSeconds": {"type": "integer", "minimum": 0},
            "backoffLimit": {"type": "integer", "minimum": 0},
            "suspend": {"type": "boolean"},
            "metadata": _STR_MAP,
            "rayClusterSpec": CLUSTER_SPEC,
            "clusterSelector": _STR_MAP,
            "managedBy": {"type": "string"},
        },
        "oneOf": [{"required": ["rayClusterSpec"]}, {"required": ["clusterSelector"]}],
        "additionalProperties": False,
    },
)
SCHEMAS = {"RayCluster": RAYCLUSTER, "RayJob": RAYJOB}
