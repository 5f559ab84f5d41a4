/**
 * The kwok stages of the sandbox: how fake nodes and pods behave. Nodes become Ready and keep a
 * lease, with kwok's server as their kubelet endpoint (it serves pod logs, see kwok-logs.ts);
 * pods become Running and Ready as soon as they are scheduled; pods owned by a Job end after a
 * delay, Succeeded unless they ask to fail.
 *
 * A test makes a Job's pod fail by giving the pod template the label
 * `runboat-sandbox/outcome: fail` (exit code 1, reason Error). The annotation
 * `runboat-sandbox/run-for` (a Go duration such as `3s`) sets how long such a pod runs before it
 * ends, in place of the sandbox's default.
 */

/** Label on a Job's pod template that makes the pod end Failed. */
export const OUTCOME_LABEL = 'runboat-sandbox/outcome';
/** Annotation on a Job's pod template: how long the pod runs (Go duration, e.g. `2s`). */
export const RUN_FOR_ANNOTATION = 'runboat-sandbox/run-for';

const nodeConditions = `
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $since | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}`;

const nodeReady = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: sandbox-node-ready
spec:
  resourceRef: { apiGroup: v1, kind: Node }
  selector:
    matchExpressions:
      - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
        operator: NotIn
        values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $since := or .metadata.creationTimestamp $now }}${nodeConditions}
      addresses:
      {{ with NodeIP }}
      - { address: {{ . | Quote }}, type: InternalIP }
      {{ end }}
      {{ with NodeName }}
      - { address: {{ . | Quote }}, type: Hostname }
      {{ end }}
      {{ with NodePort }}
      daemonEndpoints:
        kubeletEndpoint: { Port: {{ . }} }
      {{ end }}
      allocatable:
      {{ with .status.allocatable }}{{ YAML . 1 }}{{ else }}
        { cpu: 1k, memory: 4Ti, pods: 1M }
      {{ end }}
      capacity:
      {{ with .status.capacity }}{{ YAML . 1 }}{{ else }}
        { cpu: 1k, memory: 4Ti, pods: 1M }
      {{ end }}
      nodeInfo:
        architecture: amd64
        operatingSystem: linux
        kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
        kubeProxyVersion: {{ printf "kwok-%s" Version | Quote }}
        containerRuntimeVersion: {{ printf "kwok-%s" Version | Quote }}
        kernelVersion: {{ printf "kwok-%s" Version | Quote }}
      phase: Running
`;

// The node lease is renewed by kwok itself; the status only needs a rare refresh.
const nodeHeartbeat = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: sandbox-node-heartbeat
spec:
  resourceRef: { apiGroup: v1, kind: Node }
  selector:
    matchExpressions:
      - key: '.status.phase'
        operator: In
        values: ['Running']
      - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
        operator: In
        values: ['True']
  delay:
    durationMilliseconds: 300000
    jitterDurationMilliseconds: 310000
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $since := or .metadata.creationTimestamp $now }}${nodeConditions}
`;

/** The start of a pod stage: pods not being deleted, in one phase. */
function podStage(name: string, phase: 'Pending' | 'Running'): string {
  return `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: ${name}
spec:
  resourceRef: { apiGroup: v1, kind: Pod }
  selector:
    matchExpressions:
      - key: '.metadata.deletionTimestamp'
        operator: DoesNotExist
      - key: '.status.phase'
        operator: In
        values: ['${phase}']
`;
}

const podRunning = `${podStage('sandbox-pod-running', 'Pending')}      - key: '.spec.nodeName'
        operator: Exists
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      {{ range list "PodScheduled" "Initialized" "ContainersReady" "Ready" }}
      - { type: {{ . }}, status: "True", lastTransitionTime: {{ $now | Quote }} }
      {{ end }}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        ready: true
        started: true
        restartCount: 0
        state: { running: { startedAt: {{ $now | Quote }} } }
      {{ end }}
      {{ with NodeIPWith .spec.nodeName }}
      hostIP: {{ . | Quote }}
      {{ end }}
      {{ with PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      podIP: {{ . | Quote }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
`;

function podEnd(name: string, outcome: 'Succeeded' | 'Failed', defaultRunMs: number): string {
  const exitCode = outcome === 'Succeeded' ? 0 : 1;
  const reason = outcome === 'Succeeded' ? 'Completed' : 'Error';
  const outcomeOperator = outcome === 'Succeeded' ? 'NotIn' : 'In';
  return `${podStage(name, 'Running')}      - key: '.metadata.ownerReferences.[].kind'
        operator: In
        values: ['Job']
      - key: '.metadata.labels["${OUTCOME_LABEL}"]'
        operator: ${outcomeOperator}
        values: ['fail']
  delay:
    durationMilliseconds: ${defaultRunMs}
    durationFrom:
      expressionFrom: '.metadata.annotations["${RUN_FOR_ANNOTATION}"]'
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      {{ range list "ContainersReady" "Ready" }}
      - { type: {{ . }}, status: "False", reason: PodCompleted, lastTransitionTime: {{ $now | Quote }} }
      {{ end }}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        ready: false
        started: false
        restartCount: 0
        state:
          terminated:
            exitCode: ${exitCode}
            reason: ${reason}
            startedAt: {{ $now | Quote }}
            finishedAt: {{ $now | Quote }}
      {{ end }}
      phase: ${outcome}
`;
}

const podDelete = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: sandbox-pod-delete
spec:
  resourceRef: { apiGroup: v1, kind: Pod }
  selector:
    matchExpressions:
      - key: '.metadata.deletionTimestamp'
        operator: Exists
  next:
    finalizers: { empty: true }
    delete: true
`;

/** The stages as YAML documents, for the kwokctl configuration file. */
export function sandboxStages(options: { jobRunMs: number }): string[] {
  return [
    nodeReady,
    nodeHeartbeat,
    podRunning,
    podEnd('sandbox-pod-job-succeeded', 'Succeeded', options.jobRunMs),
    podEnd('sandbox-pod-job-failed', 'Failed', options.jobRunMs),
    podDelete,
  ];
}
