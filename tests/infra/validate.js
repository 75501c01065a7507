#!/usr/bin/env node
// Validates every object of a rendered chart (`helm template` output, a YAML stream on stdin or
// in the file given) with the kubernetes-models validators, then checks the project's rules:
//   - every container and init container: runAsNonRoot, readOnlyRootFilesystem,
//     allowPrivilegeEscalation false, capabilities drop ALL, resources requests and limits;
//   - every object is namespaced by the release (no cluster-scoped kinds) and labelled
//     app.kubernetes.io/name and app.kubernetes.io/instance;
//   - the expectations of an optional JSON file (--expect FILE): counts per kind, env values
//     of named containers, strings the output must or must not contain, and the objects allowed
//     hostNetwork ("allowHostNetwork": [names]; everything else must not use host namespaces).
// Usage: node validate.js [--expect FILE] [RENDERED.yaml]     (exit 0 valid, 1 invalid)
'use strict';
const fs = require('fs');
const YAML = require('yaml');

const MODELS = {
    'v1/ConfigMap': 'kubernetes-models/v1/ConfigMap',
    'v1/Pod': 'kubernetes-models/v1/Pod',
    'v1/Secret': 'kubernetes-models/v1/Secret',
    'v1/Service': 'kubernetes-models/v1/Service',
    'v1/ServiceAccount': 'kubernetes-models/v1/ServiceAccount',
    'apps/v1/Deployment': 'kubernetes-models/apps/v1/Deployment',
    'apps/v1/StatefulSet': 'kubernetes-models/apps/v1/StatefulSet',
    'autoscaling/v2/HorizontalPodAutoscaler': 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler',
    'policy/v1/PodDisruptionBudget': 'kubernetes-models/policy/v1/PodDisruptionBudget',
    'networking.k8s.io/v1/Ingress': 'kubernetes-models/networking.k8s.io/v1/Ingress',
    'networking.k8s.io/v1/NetworkPolicy': 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy',
    'rbac.authorization.k8s.io/v1/Role': 'kubernetes-models/rbac.authorization.k8s.io/v1/Role',
    'rbac.authorization.k8s.io/v1/RoleBinding': 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding',
    'coordination.k8s.io/v1/Lease': 'kubernetes-models/coordination.k8s.io/v1/Lease',
    'monitoring.coreos.com/v1/ServiceMonitor':
        '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
};

function parseArgs(argv) {
    const out = { expect: null, file: null };
    for (let i = 0; i < argv.length; i++) {
        if (argv[i] === '--expect') out.expect = argv[++i];
        else if (out.file === null) out.file = argv[i];
        else throw new Error(`unexpected argument ${argv[i]}`);
    }
    return out;
}

function podSpecOf(obj) {
    switch (obj.kind) {
    case 'Pod':
        return obj.spec;
    case 'Deployment':
    case 'StatefulSet':
        return obj.spec && obj.spec.template && obj.spec.template.spec;
    default:
        return null;
    }
}

function checkContainer(where, c, pod, errors) {
    const sc = c.securityContext || {};
    const psc = pod.securityContext || {};
    const nonRoot = sc.runAsNonRoot !== undefined ? sc.runAsNonRoot : psc.runAsNonRoot;
    if (nonRoot !== true) errors.push(`${where}: runAsNonRoot is not true`);
    const uid = sc.runAsUser !== undefined ? sc.runAsUser : psc.runAsUser;
    if (uid === 0) errors.push(`${where}: runAsUser is 0`);
    if (sc.readOnlyRootFilesystem !== true) errors.push(`${where}: readOnlyRootFilesystem is not true`);
    if (sc.allowPrivilegeEscalation !== false) errors.push(`${where}: allowPrivilegeEscalation is not false`);
    if (sc.privileged === true) errors.push(`${where}: privileged`);
    const drop = (sc.capabilities && sc.capabilities.drop) || [];
    if (!drop.includes('ALL')) errors.push(`${where}: capabilities.drop does not contain ALL`);
    const add = (sc.capabilities && sc.capabilities.add) || [];
    if (add.length) errors.push(`${where}: capabilities.add is not empty`);
    const r = c.resources || {};
    if (!r.requests || !r.limits || !r.limits.memory)
        errors.push(`${where}: resources.requests and resources.limits.memory must be set`);
    if (!c.image || /:latest$/.test(c.image) || !/:/.test(c.image.split('/').pop()))
        errors.push(`${where}: image '${c.image}' has no pinned tag`);
}

function checkObject(obj, errors, allowHostNetwork) {
    const id = `${obj.kind}/${obj.metadata && obj.metadata.name}`;
    const key = `${obj.apiVersion}/${obj.kind}`;
    const mod = MODELS[key];
    if (!mod) {
        errors.push(`${id}: no validator for ${key}`);
        return;
    }
    const Model = require(mod)[obj.kind];
    try {
        new Model(obj).validate();
    } catch (e) {
        const details = e.errors ? JSON.stringify(e.errors, null, 1) : '';
        errors.push(`${id}: ${e.message} ${details}`);
    }
    const labels = (obj.metadata && obj.metadata.labels) || {};
    for (const l of ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/managed-by'])
        if (!labels[l]) errors.push(`${id}: label ${l} is missing`);
    const pod = podSpecOf(obj);
    if (pod) {
        // hostNetwork only where the expect file allows it for the object (the local-only
        // sidecarExample.hostNetwork of deploy/local).
        const hostNetOk = pod.hostNetwork && (allowHostNetwork || []).includes(obj.metadata && obj.metadata.name);
        if ((pod.hostNetwork && !hostNetOk) || pod.hostPID || pod.hostIPC) errors.push(`${id}: host namespaces`);
        for (const c of pod.containers || []) checkContainer(`${id} container ${c.name}`, c, pod, errors);
        for (const c of pod.initContainers || [])
            checkContainer(`${id} initContainer ${c.name}`, c, pod, errors);
    }
}

function containersByName(docs) {
    const m = new Map();
    for (const d of docs) {
        const pod = podSpecOf(d);
        if (!pod) continue;
        for (const c of (pod.containers || []).concat(pod.initContainers || []))
            m.set(`${d.metadata.name}/${c.name}`, { obj: d, pod, c });
    }
    return m;
}

function checkExpect(exp, docs, text, errors) {
    const counts = {};
    for (const d of docs) counts[d.kind] = (counts[d.kind] || 0) + 1;
    for (const [kind, n] of Object.entries(exp.kinds || {}))
        if ((counts[kind] || 0) !== n) errors.push(`expected ${n} ${kind}, rendered ${counts[kind] || 0}`);
    const cs = containersByName(docs);
    for (const [where, env] of Object.entries(exp.env || {})) {
        const hit = cs.get(where);
        if (!hit) {
            errors.push(`expected a container ${where}; rendered: ${[...cs.keys()].join(', ')}`);
            continue;
        }
        const have = {};
        for (const e of hit.c.env || []) have[e.name] = e.value !== undefined ? e.value : e.valueFrom ? '<from>' : '';
        for (const [k, v] of Object.entries(env)) {
            if (v === null) {
                if (k in have) errors.push(`${where}: env ${k} should be absent`);
            } else if (have[k] !== v) {
                errors.push(`${where}: env ${k} is ${JSON.stringify(have[k])}, expected ${JSON.stringify(v)}`);
            }
        }
    }
    for (const s of exp.contains || []) if (!text.includes(s)) errors.push(`output lacks ${JSON.stringify(s)}`);
    for (const s of exp.absent || []) if (text.includes(s)) errors.push(`output contains ${JSON.stringify(s)}`);
}

function main() {
    const args = parseArgs(process.argv.slice(2));
    const text = fs.readFileSync(args.file || 0, 'utf8');
    const docs = [];
    for (const doc of YAML.parseAllDocuments(text)) {
        if (doc.errors.length) {
            console.error(`YAML error: ${doc.errors[0].message}`);
            process.exit(1);
        }
        const obj = doc.toJS();
        if (obj !== null && obj !== undefined) docs.push(obj);
    }
    const errors = [];
    if (docs.length === 0) errors.push('nothing was rendered');
    const exp = args.expect ? JSON.parse(fs.readFileSync(args.expect, 'utf8')) : null;
    for (const d of docs) checkObject(d, errors, exp && exp.allowHostNetwork);
    if (exp) checkExpect(exp, docs, text, errors);
    const kinds = {};
    for (const d of docs) kinds[d.kind] = (kinds[d.kind] || 0) + 1;
    console.log(`validated ${docs.length} objects: ${JSON.stringify(kinds)}`);
    if (errors.length) {
        for (const e of errors) console.error(`INVALID ${e}`);
        console.error(`${errors.length} problem(s)`);
        process.exit(1);
    }
}

main();
