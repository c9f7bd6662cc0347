{{/*
Checks that need more than one value at a time (values.schema.json checks each value alone).
Each failure says what to change.
*/}}
{{- define "inspatio.validate" -}}
{{- range $role := splitList " " (include "inspatio.roles" .) -}}
{{- $key := include "inspatio.valuesKey" $role -}}
{{- $svc := index $.Values $key -}}
{{- $needed := add (int $svc.drainSeconds) (int $svc.preStopSleepSeconds) -}}
{{- if le (int $svc.terminationGracePeriodSeconds) $needed -}}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds (%d) + drainSeconds (%d): set it to at least %d" $key (int $svc.terminationGracePeriodSeconds) (int $svc.preStopSleepSeconds) (int $svc.drainSeconds) (add1 $needed)) -}}
{{- end -}}
{{- end -}}
{{- if .Values.autoscaling.enabled -}}
{{- range $role := splitList " " (include "inspatio.stages" .) -}}
{{- $key := include "inspatio.valuesKey" $role -}}
{{- $a := (index $.Values $key).autoscaling -}}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) -}}
{{- fail (printf "%s.autoscaling: minReplicas (%d) is above maxReplicas (%d)" $key (int $a.minReplicas) (int $a.maxReplicas)) -}}
{{- end -}}
{{- if and (eq $.Values.autoscaling.engine "hpa") (lt (int $a.minReplicas) 1) -}}
{{- fail (printf "%s.autoscaling.minReplicas is 0, but a HorizontalPodAutoscaler cannot scale to zero: use autoscaling.engine=keda, or minReplicas >= 1" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) -}}
{{- fail "tls.enabled needs tls.secretName: the name of a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt (cert-manager writes one for a Certificate; see deploy/README.md \"TLS\")" -}}
{{- end -}}
{{- if and .Values.auth.enabled (not .Values.auth.tenants) -}}
{{- fail "auth.enabled needs at least one tenant in auth.tenants: make a token with `inspatio token new` and list its sha256 under token_sha256 (see deploy/README.md \"Tokens and tenants\")" -}}
{{- end -}}
{{- $names := dict -}}
{{- $digests := dict -}}
{{- range $t := .Values.auth.tenants -}}
{{- if hasKey $names $t.name -}}
{{- fail (printf "auth.tenants: the name %q is used twice; each tenant needs its own" $t.name) -}}
{{- end -}}
{{- $_ := set $names $t.name true -}}
{{- range $d := $t.token_sha256 -}}
{{- if hasKey $digests $d -}}
{{- fail (printf "auth.tenants: token digest %s belongs to both %q and %q; a token must map to one tenant" $d (get $digests $d) $t.name) -}}
{{- end -}}
{{- $_ := set $digests $d $t.name -}}
{{- end -}}
{{- end -}}
{{- if and .Values.minio.enabled (or .Values.store.url .Values.store.endpoint) -}}
{{- fail "minio.enabled runs a store in the cluster: leave store.url and store.endpoint empty (or disable minio to use your own S3)" -}}
{{- end -}}
{{- end -}}
