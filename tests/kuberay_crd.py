"""A minimal JSON schema of the Kubernetes objects that orchestrator/clusters/kuberay ships.

The KubeRay `ray.io/v1` kinds are written from the KubeRay CRD API reference (RayCluster,
RayJob; KubeRay v1.6-v1.7 field names and enums, `authOptions.secretName` since v1.6),
the core kinds (ServiceAccount, PersistentVolumeClaim, Deployment, Service) from the
Kubernetes API reference, for the fields used here. Every object lists the fields its
type defines (`additionalProperties: false`), so a misspelt or invented field fails.
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
VOLUME_MOUNT = {"type": "object", "required": ["name", "mountPath"], "additionalProperties": False,
                "properties": {"name": STRING, "mountPath": STRING, "readOnly": BOOL, "subPath": STRING}}
VOLUME = {"type": "object", "required": ["name"], "additionalProperties": False,
          "properties": {"name": STRING,
                         "persistentVolumeClaim": {"type": "object", "required": ["claimName"],
                                                   "additionalProperties": False,
                                                   "properties": {"claimName": STRING, "readOnly": BOOL}},
                         "emptyDir": OBJECT, "secret": OBJECT, "configMap": OBJECT, "hostPath": OBJECT}}
CONTAINER = {
    "type": "object", "required": ["name", "image"],
    "properties": {"name": STRING, "image": STRING, "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                   "command": {"type": "array"}, "args": {"type": "array"}, "env": ENV,
                   "envFrom": {"type": "array"}, "ports": {"type": "array", "items": {
                       "type": "object", "required": ["containerPort"],
                       "properties": {"containerPort": INT, "name": STRING, "protocol": STRING}}},
                   "resources": RESOURCES, "volumeMounts": {"type": "array", "items": VOLUME_MOUNT},
                   "securityContext": OBJECT, "lifecycle": OBJECT,
                   "readinessProbe": OBJECT, "livenessProbe": OBJECT, "workingDir": STRING},
    "additionalProperties": False,
}
POD_TEMPLATE = {
    "type": "object", "required": ["spec"], "additionalProperties": False,
    "properties": {"metadata": OBJECT, "spec": {
        "type": "object", "required": ["containers"],
        "properties": {"containers": {"type": "array", "minItems": 1, "items": CONTAINER},
                       "serviceAccountName": STRING, "tolerations": {"type": "array"},
                       "nodeSelector": STR_MAP, "affinity": OBJECT, "volumes": {"type": "array", "items": VOLUME},
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


def _core(api_version: str, kind: str, spec: dict) -> dict:
    return {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
            "additionalProperties": False,
            "properties": {"apiVersion": {"const": api_version}, "kind": {"const": kind},
                           "metadata": METADATA, "spec": spec}}


PERSISTENT_VOLUME_CLAIM = _core("v1", "PersistentVolumeClaim", {
    "type": "object", "required": ["accessModes", "resources"], "additionalProperties": False,
    "properties": {"accessModes": {"type": "array", "minItems": 1, "items": {
                       "enum": ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]}},
                   "resources": RESOURCES, "storageClassName": STRING, "volumeName": STRING,
                   "volumeMode": {"enum": ["Filesystem", "Block"]}, "selector": OBJECT},
})
LABEL_SELECTOR = {"type": "object", "required": ["matchLabels"], "additionalProperties": False,
                  "properties": {"matchLabels": STR_MAP}}
DEPLOYMENT = _core("apps/v1", "Deployment", {
    "type": "object", "required": ["selector", "template"], "additionalProperties": False,
    "properties": {"replicas": INT, "selector": LABEL_SELECTOR, "template": POD_TEMPLATE,
                   "strategy": OBJECT, "revisionHistoryLimit": INT},
})
SERVICE = _core("v1", "Service", {
    "type": "object", "required": ["ports"], "additionalProperties": False,
    "properties": {"type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]},
                   "selector": STR_MAP,
                   "ports": {"type": "array", "minItems": 1, "items": {
                       "type": "object", "required": ["port"], "additionalProperties": False,
                       "properties": {"name": STRING, "port": INT, "targetPort": {"type": ["integer", "string"]},
                                      "protocol": {"enum": ["TCP", "UDP", "SCTP"]}}}}},
})
SCHEMAS = {"RayCluster": RAY_CLUSTER, "RayJob": RAY_JOB, "ServiceAccount": SERVICE_ACCOUNT,
           "PersistentVolumeClaim": PERSISTENT_VOLUME_CLAIM, "Deployment": DEPLOYMENT, "Service": SERVICE}
