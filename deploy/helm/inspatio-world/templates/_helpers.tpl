{{/*
Helpers shared by every template. The four services are rendered by looping over
"inspatio.roles"; everything that differs between them lives in values.yaml, not in templates.
*/}}

{{/* The four services, in pipeline order, plus the optional v1.5 generator pool (generatorV15). */}}
{{- define "inspatio.roles" -}}coordinator {{ include "inspatio.stages" . }}{{- end -}}
{{/* The GPU stages (everything but the coordinator): weights, GPUs, autoscaling. */}}
{{- define "inspatio.stages" -}}
caption depthrender generator{{ if .Values.generatorV15.enabled }} generator-v1-5{{ end }}
{{- end -}}

{{/*
Key of a role's block in values.yaml: the role itself, except the v1.5 generator pool
(role generator-v1-5, a DNS-safe name) whose block is generatorV15.
*/}}
{{- define "inspatio.valuesKey" -}}
{{- ternary "generatorV15" . (eq . "generator-v1-5") -}}
{{- end -}}

{{/* The program a role runs (services.<program>.main) and whose image it uses. */}}
{{- define "inspatio.program" -}}
{{- ternary "generator" . (eq . "generator-v1-5") -}}
{{- end -}}

{{/* INSPATIO_MODEL_VERSION of a generator role. */}}
{{- define "inspatio.modelVersion" -}}
{{- ternary "v1_5" "v1" (eq . "generator-v1-5") -}}
{{- end -}}

{{/* gRPC service names: the `service` label of the inspatio_* metrics. */}}
{{- define "inspatio.grpcService" -}}
{{- get (dict "coordinator" "inspatio.world.v1.CoordinatorService" "caption" "inspatio.world.v1.CaptionService"
              "depthrender" "inspatio.world.v1.DepthRenderService" "generator" "inspatio.world.v1.GeneratorService"
              "generator-v1-5" "inspatio.world.v1.GeneratorService") . -}}
{{- end -}}

{{- define "inspatio.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<chart>, shortened so that "-<role>" suffixes still fit in 63 characters. */}}
{{- define "inspatio.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects: (dict "ctx" $ "role" "generator") -> <fullname>-generator */}}
{{- define "inspatio.componentName" -}}
{{- printf "%s-%s" (include "inspatio.fullname" .ctx) .role -}}
{{- end -}}

{{- define "inspatio.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; (dict "ctx" $ "role" "caption"). */}}
{{- define "inspatio.labels" -}}
helm.sh/chart: {{ include "inspatio.chart" .ctx }}
{{ include "inspatio.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: inspatio-world
{{- end -}}

{{/* Selector labels: immutable once deployed, so nothing here may depend on values. */}}
{{- define "inspatio.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inspatio.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .role }}
app.kubernetes.io/component: {{ .role }}
{{- end }}
{{- end -}}

{{- define "inspatio.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "inspatio.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image of a role: (dict "ctx" $ "role" "generator") -> [registry/]inspatio-world/generator:tag */}}
{{- define "inspatio.image" -}}
{{- $v := .ctx.Values -}}
{{- $program := include "inspatio.program" .role -}}
{{- $own := (index $v (include "inspatio.valuesKey" .role)).image -}}
{{- if ne $program .role -}}
{{- /* the v1.5 pool runs the generator's image unless generatorV15.image names another */ -}}
{{- $own = dict "repository" ($own.repository | default $v.generator.image.repository) "tag" ($own.tag | default $v.generator.image.tag) -}}
{{- end -}}
{{- $repository := $own.repository | default (printf "%s/%s" $v.image.repositoryPrefix $program) -}}
{{- if $v.image.registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $v.image.registry) $repository -}}
{{- end -}}
{{- printf "%s:%s" $repository ($own.tag | default $v.image.tag | default .ctx.Chart.AppVersion) -}}
{{- end -}}

{{/* DNS name of a role's Service, fully qualified so every gRPC resolver finds it. */}}
{{- define "inspatio.serviceHost" -}}
{{- printf "%s.%s.svc.%s" (include "inspatio.componentName" .) .ctx.Release.Namespace .ctx.Values.clusterDomain -}}
{{- end -}}

{{/* ---------------------------------------------------------------- object store */}}

{{- define "inspatio.minioName" -}}
{{- include "inspatio.componentName" (dict "ctx" . "role" "minio") -}}
{{- end -}}

{{/* INSPATIO_STORE: store.url as given, else the in-cluster MinIO, else built from store.* */}}
{{- define "inspatio.storeURL" -}}
{{- $s := .Values.store -}}
{{- if $s.url -}}
{{- $s.url -}}
{{- else -}}
{{- $query := list -}}
{{- if .Values.minio.enabled -}}
{{- $query = append $query (printf "endpoint=%s:9000" (include "inspatio.serviceHost" (dict "ctx" . "role" "minio"))) -}}
{{- $query = append $query "secure=0" -}}
{{- else -}}
{{- if $s.endpoint }}{{ $query = append $query (printf "endpoint=%s" $s.endpoint) }}{{ end -}}
{{- $query = append $query (printf "secure=%s" (ternary "1" "0" $s.secure)) -}}
{{- end -}}
{{- if $s.region }}{{ $query = append $query (printf "region=%s" $s.region) }}{{ end -}}
{{- if ne (int $s.partSizeMb) 64 }}{{ $query = append $query (printf "part_size_mb=%d" (int $s.partSizeMb)) }}{{ end -}}
{{- printf "s3://%s?%s" $s.bucket (join "&" $query) -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the S3 keys: the existing one, or the one this chart creates. */}}
{{- define "inspatio.s3SecretName" -}}
{{- .Values.store.credentials.existingSecret | default (printf "%s-s3" (include "inspatio.fullname" .)) -}}
{{- end -}}

{{/*
Keys of a chart-created Secret: as given, else (MinIO only) the ones already in the cluster, else
new random ones. `lookup` keeps random keys stable across upgrades; it returns nothing under
`helm template`, which then shows fresh random keys.
*/}}
{{- define "inspatio.s3Keys" -}}
{{- $c := .Values.store.credentials -}}
{{- if and $c.accessKey $c.secretKey -}}
{{- dict "access" $c.accessKey "secret" $c.secretKey | toJson -}}
{{- else if .Values.minio.enabled -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "inspatio.s3SecretName" .) -}}
{{- if and $existing $existing.data (hasKey $existing.data $c.accessKeyKey) (hasKey $existing.data $c.secretKeyKey) -}}
{{- dict "access" (index $existing.data $c.accessKeyKey | b64dec) "secret" (index $existing.data $c.secretKeyKey | b64dec) | toJson -}}
{{- else -}}
{{- dict "access" (randAlphaNum 20) "secret" (randAlphaNum 40) | toJson -}}
{{- end -}}
{{- else -}}
{{- fail "store.credentials: set existingSecret (recommended), or accessKey and secretKey, or enable minio" -}}
{{- end -}}
{{- end -}}

{{/* env entries with the S3 keys, from the Secret. */}}
{{- define "inspatio.s3Env" -}}
- name: INSPATIO_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "inspatio.s3SecretName" . }}
      key: {{ .Values.store.credentials.accessKeyKey }}
- name: INSPATIO_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "inspatio.s3SecretName" . }}
      key: {{ .Values.store.credentials.secretKeyKey }}
{{- end -}}

{{/* ---------------------------------------------------------------- weights */}}

{{- define "inspatio.weightsClaim" -}}
{{- .Values.weights.existingClaim | default (printf "%s-weights" (include "inspatio.fullname" .)) -}}
{{- end -}}

{{/*
What the download Job fetches, as a short digest: the Job's name and its completion marker carry it,
so changing the list downloads again (a new Job) and stage pods wait for the new marker.
*/}}
{{- define "inspatio.weightsDigest" -}}
{{- dict "repos" .Values.weights.download.repos "urls" .Values.weights.download.urls | toJson | sha256sum | trunc 8 -}}
{{- end -}}

{{- define "inspatio.weightsJobName" -}}
{{- printf "%s-weights-%s" (include "inspatio.fullname" .) (include "inspatio.weightsDigest" .) -}}
{{- end -}}

{{- define "inspatio.weightsMarker" -}}
{{- printf "%s/.inspatio-download-%s" (trimSuffix "/" .Values.weights.mountPath) (include "inspatio.weightsDigest" .) -}}
{{- end -}}

{{/* ---------------------------------------------------------------- pods */}}

{{/* Soft spread over nodes for one role: (dict "ctx" $ "role" "coordinator") */}}
{{- define "inspatio.spreadOverNodes" -}}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "inspatio.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* Demand PromQL of a stage for KEDA: in-flight RPCs (running + queued) of all its replicas. */}}
{{- define "inspatio.demandQuery" -}}
{{- $svc := index .ctx.Values (include "inspatio.valuesKey" .role) -}}
{{- if $svc.autoscaling.query -}}
{{- tpl $svc.autoscaling.query .ctx -}}
{{- else -}}
{{- $pods := "" -}}
{{- if .ctx.Values.generatorV15.enabled -}}
{{- /* both generator pools export service="...GeneratorService": tell them apart by pod name */ -}}
{{- $v15pods := printf "%s-.*" (include "inspatio.componentName" (dict "ctx" .ctx "role" "generator-v1-5")) -}}
{{- if eq .role "generator" }}{{ $pods = printf ",pod!~%q" $v15pods }}{{ end -}}
{{- if eq .role "generator-v1-5" }}{{ $pods = printf ",pod=~%q" $v15pods }}{{ end -}}
{{- end -}}
{{- printf "sum(inspatio_rpc_in_flight{namespace=%q,service=%q%s}) or vector(0)" .ctx.Release.Namespace (include "inspatio.grpcService" .role) $pods -}}
{{- end -}}
{{- end -}}

{{/*
Wake-up PromQL for a stage at zero replicas: its own metrics are gone then, so demand is read from
the coordinator: RPCs it is serving (uploads, watches) plus jobs submitted in the last cooldown.
*/}}
{{- define "inspatio.wakeQuery" -}}
{{- $ns := .Release.Namespace -}}
{{- $coordinator := include "inspatio.grpcService" "coordinator" -}}
{{- printf "(sum(inspatio_rpc_in_flight{namespace=%q,service=%q}) or vector(0)) + (sum(increase(inspatio_rpc_requests_total{namespace=%q,service=%q,method=\"SubmitJob\"}[%ds])) or vector(0))" $ns $coordinator $ns $coordinator (int .Values.autoscaling.keda.cooldownPeriod) -}}
{{- end -}}

{{/* Replicas the Deployment sets itself: none when an autoscaler owns the count. */}}
{{- define "inspatio.autoscaled" -}}
{{- if and .ctx.Values.autoscaling.enabled (ne .role "coordinator") -}}true{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------- TLS, tokens, tenants */}}

{{/* Where the chart mounts them in the service pods (read-only, owned by root, group fsGroup). */}}
{{- define "inspatio.tlsDir" -}}/etc/inspatio/tls{{- end -}}
{{- define "inspatio.tlsClientDir" -}}/etc/inspatio/tls-client{{- end -}}
{{- define "inspatio.tenantsDir" -}}/etc/inspatio/tenants{{- end -}}
{{- define "inspatio.serviceTokenDir" -}}/etc/inspatio/service-token{{- end -}}

{{- define "inspatio.tenantsName" -}}
{{- printf "%s-tenants" (include "inspatio.fullname" .) -}}
{{- end -}}

{{/* INSPATIO_TENANTS_FILE's content: auth.tenants as given (digests only, no secret). */}}
{{- define "inspatio.tenantsJSON" -}}
{{- dict "tenants" .Values.auth.tenants | toPrettyJson -}}
{{- end -}}

{{- define "inspatio.serviceTokenSecretName" -}}
{{- .Values.auth.serviceToken.existingSecret | default (printf "%s-service-token" (include "inspatio.fullname" .)) -}}
{{- end -}}

{{/*
The generated service token: the one already in the cluster (so upgrades keep it and running pods
stay in agreement), else 48 new random characters. Under `helm template` lookup finds nothing.
*/}}
{{- define "inspatio.serviceToken" -}}
{{- $key := .Values.auth.serviceToken.key -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "inspatio.serviceTokenSecretName" .) -}}
{{- if and $existing $existing.data (hasKey $existing.data $key) -}}
{{- index $existing.data $key | b64dec -}}
{{- else -}}
{{- randAlphaNum 48 -}}
{{- end -}}
{{- end -}}

{{/*
The gRPC server name a caller verifies in a role's certificate: tls.serverName, else the Service's
name (which the certificate's dnsNames must hold). (dict "ctx" $ "role" "caption")
*/}}
{{- define "inspatio.tlsServerName" -}}
{{- .ctx.Values.tls.serverName | default (include "inspatio.serviceHost" .) -}}
{{- end -}}

{{/*
TLS-capable health probe, as an exec command: (dict "ctx" $ "role" "caption" "timeout" 5).
The kubelet's own `grpc:` probe speaks plaintext only, and a tcpSocket or metrics-port probe would
pass while the models still load (the gRPC and metrics ports open first; grpc.health.v1 says
SERVING only once the service is ready). So the pod asks its own grpc.health.v1 over TLS, with
the Python, grpcio and grpcio-health-checking every service image has: it trusts the mounted ca.crt,
verifies the name the coordinator verifies, and presents the pod's own certificate (stages with
mutual TLS require one). Costs one short Python process per probe (~0.2 s of CPU: grpcio only, never torch).
*/}}
{{- define "inspatio.tlsHealthProbe" -}}
{{- $svc := index .ctx.Values (include "inspatio.valuesKey" .role) -}}
{{- $script := `import sys, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
folder, address, name, timeout = sys.argv[1:]
read = lambda f: open(f"{folder}/{f}", "rb").read()
credentials = grpc.ssl_channel_credentials(read("ca.crt"), read("tls.key"), read("tls.crt"))
with grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", name)]) as channel:
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=float(timeout)).status
sys.exit(0 if status == health_pb2.HealthCheckResponse.SERVING else 1)` -}}
{{- $cmd := list "python" "-c" $script (include "inspatio.tlsDir" .ctx) (printf "127.0.0.1:%d" (int $svc.grpcPort)) (include "inspatio.tlsServerName" .) (toString (sub (int .timeout) 2)) -}}
exec:
  command: {{ toJson $cmd }}
{{- end -}}
