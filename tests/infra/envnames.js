#!/usr/bin/env node
// Every AZHEXGATE_* variable the chart and the Bicep hand to a binary must be an option of that
// binary: the names are derived from the option tables (struct ahg_opt_def: "store.url" ->
// AZHEXGATE_STORE_URL, plus <NAME>_FILE for any option, as secrets use), or given by `.env`.
// A binary whose sources are not in the tree yet is reported and not checked.
// Usage: node envnames.js REPO_ROOT        (exit 0 all known, 1 some unknown)
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.resolve(process.argv[2] || path.join(__dirname, '..', '..'));

function walk(dir, out) {
    if (!fs.existsSync(dir)) return out;
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p, out);
        else if (/\.[ch]$/.test(e.name)) out.push(p);
    }
    return out;
}

// Env names a component accepts, from the option tables in its sources; null = no sources.
function optionEnv(dirs) {
    const files = dirs.flatMap((d) => walk(path.join(root, d), []));
    const names = new Set();
    let tables = 0;
    for (const f of files) {
        const src = fs.readFileSync(f, 'utf8');
        if (!src.includes('ahg_opt_def')) continue;
        tables++;
        for (const m of src.matchAll(/\.name\s*=\s*"([a-z0-9_.-]+)"/g)) {
            const env = 'AZHEXGATE_' + m[1].toUpperCase().replace(/[.-]/g, '_');
            names.add(env);
            names.add(env + '_FILE');
        }
        for (const m of src.matchAll(/\.env\s*=\s*"(AZHEXGATE_[A-Z0-9_]+)"/g)) {
            names.add(m[1]);
            names.add(m[1] + '_FILE');
        }
        // AHG_OPTS_LOG(...) (common/include/ahg/config.h) expands to log_format and log_level
        if (/AHG_OPTS_LOG\(/.test(src))
            for (const env of ['AZHEXGATE_LOG_FORMAT', 'AZHEXGATE_LOG_LEVEL']) names.add(env);
    }
    return tables ? names : null;
}

// Variables a deployment file sets, per binary.
function used(file, re) {
    const text = fs.readFileSync(path.join(root, file), 'utf8');
    return [...new Set([...text.matchAll(re)].map((m) => m[1]))];
}
const chartName = /name:\s*(AZHEXGATE_[A-Z0-9_]+)/g;
const bicepName = /name:\s*'(AZHEXGATE_[A-Z0-9_]+)'/g;

const gateway = optionEnv(['gateway']);
const controller = optionEnv(['controller']);
const sidecar = optionEnv(['sidecar']);
const server = optionEnv(['allinone']);
// The co-hosted image takes the gateway's and the controller's options.
const union = (...sets) => (sets.some((s) => s === null) ? null : new Set(sets.flatMap((s) => [...s])));
const serverEnv = server || union(gateway, controller);

const checks = [
    ['charts/azhexgate/templates/gateway-deployment.yaml', chartName, 'azhexgate-gateway', gateway],
    ['charts/azhexgate/templates/controller-deployment.yaml', chartName, 'azhexgate-controller', controller],
    ['charts/azhexgate/templates/_sidecar.tpl', chartName, 'azhexgate-sidecar', sidecar],
    ['infra/modules/appservice.bicep', bicepName, 'azhexgate-server', serverEnv],
];

let bad = 0;
for (const [file, re, binary, known] of checks) {
    const vars = used(file, re);
    if (known === null) {
        console.log(`UNCHECKED ${file}: no option table of ${binary} in the tree yet (${vars.length} variables: ${vars.join(' ')})`);
        continue;
    }
    const unknown = vars.filter((v) => !known.has(v));
    for (const v of unknown) console.error(`UNKNOWN ${file}: ${v} is not an option of ${binary}`);
    bad += unknown.length;
    if (!unknown.length) console.log(`ok ${file}: ${vars.length} variables are options of ${binary}`);
}
process.exit(bad ? 1 : 0);
