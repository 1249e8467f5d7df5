"""A minimal JSON schema of the KubeRay `ray.io/v1` CRD fields that orchestrator/clusters/kuberay uses.

Written from the KubeRay CRD API reference (RayCluster, RayJob; KubeRay v1.4-v1.7 field
names and enums). Every object lists the fields the CRD defines (`additionalProperties:
false`), so a misspelt or invented field fails; pod templates are Kubernetes PodTemplateSpecs
and are checked for the container fields used here.
"""
from __future__ import annotations

STRING = {"type": "string"}
INT = {"type": "integer", "minimum": 0}
BOOL = {"type": "boolean"}
OBJECT = {"type": "object"}
QUANTITY = {"type": ["string", "integer"]}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}  # rayStartParams: strings only

RESOURCES = {
    "type": "object", "additionalProperties": False,
    "properties": {"requests": {"type": "object", "additionalProperties": QUANTITY},
                   "limits": {"type": "object", "additionalProperties": QUANTITY}},
}
ENV = {
    "type": "array",
    "items": {"type": "object", "required": ["name"], "additionalProperties": False,
              "properties": {"name": STRING, "value": STRING, "valueFrom": {
                  "type": "object", "additionalProperties": False,
                  "properties": {"secretKeyRef": {"type": "object", "required": ["name", "key"],
                                                  "additionalProperties": False,
                                                  "properties": {"name": STRING, "key": STRING,
                                                                 "optional": BOOL}},
                                 "configMapKeyRef": OBJECT, "fieldRef": OBJECT}}}},
}
CONTAINER = {
    "type": "object", "required": ["name", "image"],
    "properties": {"name": STRING, "image": STRING, "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                   "command": {"type": "array"}, "args": {"type": "array"}, "env": ENV,
                   "envFrom": {"type": "array"}, "ports": {"type": "array", "items": {
                       "type": "object", "required": ["containerPort"],
                       "properties": {"containerPort": INT, "name": STRING, "protocol": STRING}}},
                   "resources": RESOURCES, "volumeMounts": {"type": "array"},
                   "securityContext": OBJECT, "lifecycle": OBJECT},
    "additionalProperties": False,
}
POD_TEMPLATE = {
    "type": "object", "required": ["spec"], "additionalProperties": False,
    "properties": {"metadata": OBJECT, "spec": {
        "type": "object", "required": ["containers"],
        "properties": {"containers": {"type": "array", "minItems": 1, "items": CONTAINER},
                       "serviceAccountName": STRING, "tolerations": {"type": "array"},
                       "nodeSelector": STR_MAP, "affinity": OBJECT, "volumes": {"type": "array"},
                       "restartPolicy": {"enum": ["Always", "OnFailure", "Never"]},
                       "imagePullSecrets": {"type": "array"}, "securityContext": OBJECT,
                       "priorityClassName": STRING},
        "additionalProperties": False}},
}
AUTOSCALER_OPTIONS = {
    "type": "object", "additionalProperties": False,
    "properties": {"version": {"enum": ["v1", "v2"]},
                   "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
                   "idleTimeoutSeconds": INT, "image": STRING, "imagePullPolicy": STRING,
                   "resources": RESOURCES, "env": ENV, "envFrom": {"type": "array"},
                   "securityContext": OBJECT, "volumeMounts": {"type": "array"}},
}
HEAD_GROUP = {
    "type": "object", "required": ["template"], "additionalProperties": False,
    "properties": {"serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                   "headService": OBJECT, "enableIngress": BOOL, "rayStartParams": STR_MAP,
                   "template": POD_TEMPLATE, "resources": STR_MAP, "labels": STR_MAP},
}
WORKER_GROUP = {
    "type": "object", "required": ["groupName", "template"], "additionalProperties": False,
    "properties": {"groupName": STRING, "replicas": INT, "minReplicas": INT, "maxReplicas": INT,
                   "idleTimeoutSeconds": INT, "rayStartParams": STR_MAP, "template": POD_TEMPLATE,
                   "scaleStrategy": OBJECT, "numOfHosts": INT, "suspend": BOOL,
                   "resources": STR_MAP, "labels": STR_MAP},
}
RAY_CLUSTER_SPEC = {
    "type": "object", "required": ["headGroupSpec"], "additionalProperties": False,
    "properties": {"rayVersion": STRING, "enableInTreeAutoscaling": BOOL,
                   "autoscalerOptions": AUTOSCALER_OPTIONS, "headGroupSpec": HEAD_GROUP,
                   "workerGroupSpecs": {"type": "array", "items": WORKER_GROUP},
                   "authOptions": {"type": "object", "additionalProperties": False,
                                   "properties": {"mode": {"enum": ["disabled", "token"]},
                                                  "secretName": STRING, "enableK8sTokenAuth": BOOL}},
                   "gcsFaultToleranceOptions": OBJECT, "headServiceAnnotations": STR_MAP,
                   "suspend": BOOL, "managedBy": STRING},
}
METADATA = {"type": "object", "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                           "namespace": STRING, "labels": STR_MAP, "annotations": STR_MAP}}


def _resource(kind: str, spec: dict) -> dict:
    return {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
            "additionalProperties": False,
            "properties": {"apiVersion": {"const": "ray.io/v1"}, "kind": {"const": kind},
                           "metadata": METADATA, "spec": spec}}


RAY_CLUSTER = _resource("RayCluster", RAY_CLUSTER_SPEC)
RAY_JOB = _resource("RayJob", {
    "type": "object", "required": ["entrypoint"], "additionalProperties": False,
    "properties": {"entrypoint": STRING, "runtimeEnvYAML": STRING, "jobId": STRING,
                   "shutdownAfterJobFinishes": BOOL, "ttlSecondsAfterFinished": INT,
                   "activeDeadlineSeconds": INT, "backoffLimit": INT,
                   "rayClusterSpec": RAY_CLUSTER_SPEC, "clusterSelector": STR_MAP,
                   "submitterPodTemplate": POD_TEMPLATE, "submitterConfig": OBJECT,
                   "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
                   "entrypointNumCpus": {"type": "number"}, "entrypointNumGpus": {"type": "number"},
                   "entrypointResources": STRING, "suspend": BOOL, "managedBy": STRING,
                   "deletionStrategy": OBJECT, "metadata": STR_MAP},
})
SERVICE_ACCOUNT = {"type": "object", "required": ["apiVersion", "kind", "metadata"],
                   "properties": {"apiVersion": {"const": "v1"}, "kind": {"const": "ServiceAccount"},
                                  "metadata": METADATA}}
SCHEMAS = {"RayCluster": RAY_CLUSTER, "RayJob": RAY_JOB, "ServiceAccount": SERVICE_ACCOUNT}
