#!/usr/bin/env node
// Keeps .github/ consistent with the scripts it calls (GitHub Actions cannot run here):
//   - every workflow and local action parses and has its required keys;
//   - every repository script a `run:` step names exists and is executable, and every
//     `tests/infra/run.sh` sub-command it uses is one run.sh knows;
//   - every infra/params/<env>.bicepparam is compiled by the check job and deployed by exactly
//     one job running in the GitHub environment <env>, after a what-if, with OIDC (id-token);
//   - ci.yml runs the test command that .ci/run runs.
// Usage: node workflows.js REPO_ROOT        (exit 0 consistent, 1 not)
'use strict';
const fs = require('fs');
const path = require('path');
const YAML = require('yaml');

const root = path.resolve(process.argv[2] || path.join(__dirname, '..', '..'));
const errors = [];
const rel = (p) => path.relative(root, p);

function load(p) {
    const doc = YAML.parseDocument(fs.readFileSync(p, 'utf8'));
    if (doc.errors.length) {
        errors.push(`${rel(p)}: ${doc.errors[0].message}`);
        return null;
    }
    return doc.toJS();
}

const runSh = fs.readFileSync(path.join(root, 'tests/infra/run.sh'), 'utf8');
const runCmds = new Set([...runSh.matchAll(/^([a-z-]+)\)$/gm)].map((m) => m[1]));

function checkRun(where, script) {
    for (const m of script.matchAll(/(?:^|[\s"'(=$])((?:scripts|tests\/infra|\.ci)\/[\w./-]+)/g)) {
        const f = path.join(root, m[1]);
        if (!fs.existsSync(f)) errors.push(`${where}: runs ${m[1]}, which does not exist`);
        else if (/\.sh$|\/run$/.test(m[1]) && !(fs.statSync(f).mode & 0o111) && !/bash\s+\S*$/.test(script))
            errors.push(`${where}: ${m[1]} is not executable`);
    }
    for (const m of script.matchAll(/tests\/infra\/run\.sh\s+([a-z-]+)/g))
        if (!runCmds.has(m[1])) errors.push(`${where}: tests/infra/run.sh has no sub-command ${m[1]}`);
}

function steps(where, list, cb) {
    (list || []).forEach((s, i) => {
        if (typeof s.run === 'string') checkRun(`${where} step ${s.name || i}`, s.run);
        cb && cb(s);
    });
}

const wfDir = path.join(root, '.github/workflows');
const workflows = {};
for (const f of fs.readdirSync(wfDir).filter((f) => /\.ya?ml$/.test(f))) {
    const wf = load(path.join(wfDir, f));
    if (!wf) continue;
    workflows[f] = wf;
    for (const k of ['name', 'on', 'jobs']) if (!(k in wf)) errors.push(`${f}: no '${k}'`);
    for (const [id, job] of Object.entries(wf.jobs || {})) {
        if (!job['runs-on']) errors.push(`${f} job ${id}: no runs-on`);
        steps(`${f} job ${id}`, job.steps, (s) => {
            if (typeof s.uses === 'string' && s.uses.startsWith('./')) {
                const a = path.join(root, s.uses, 'action.yml');
                if (!fs.existsSync(a)) errors.push(`${f} job ${id}: uses ${s.uses}, which has no action.yml`);
            }
        });
    }
}

const actionsDir = path.join(root, '.github/actions');
const actions = {};
if (fs.existsSync(actionsDir)) {
    for (const d of fs.readdirSync(actionsDir)) {
        const a = load(path.join(actionsDir, d, 'action.yml'));
        if (!a) continue;
        actions[`./.github/actions/${d}`] = a;
        if (!a.runs || a.runs.using !== 'composite') errors.push(`action ${d}: not a composite action`);
        steps(`action ${d}`, a.runs && a.runs.steps);
    }
}

// ci.yml runs the test command of .ci/run.
const ci = workflows['ci.yml'];
const ciRun = fs.readFileSync(path.join(root, '.ci/run'), 'utf8');
const testCmd = (ciRun.match(/scripts\/test\.sh/) || [])[0];
if (!ci) errors.push('.github/workflows/ci.yml is missing');
else if (!testCmd) errors.push('.ci/run does not call scripts/test.sh');
else if (!JSON.stringify(ci).includes(testCmd)) errors.push(`ci.yml does not run ${testCmd}`);

// infra.yml: check + one deploy job per environment.
const infra = workflows['infra.yml'];
const envs = fs.readdirSync(path.join(root, 'infra/params'))
    .filter((f) => f.endsWith('.bicepparam'))
    .map((f) => f.replace(/\.bicepparam$/, ''));
if (!infra) errors.push('.github/workflows/infra.yml is missing');
else {
    const text = JSON.stringify(infra);
    for (const c of ['bicep-build', 'bicep-lint'])
        if (!text.includes(`tests/infra/run.sh ${c}`)) errors.push(`infra.yml does not run ${c}`);
    for (const env of envs) {
        if (!text.includes(`tests/infra/run.sh bicep-params ${env}`))
            errors.push(`infra.yml does not compile infra/params/${env}.bicepparam`);
        const jobs = Object.entries(infra.jobs || {}).filter(([, j]) => j.environment === env ||
            (j.environment && j.environment.name === env));
        if (jobs.length !== 1) {
            errors.push(`infra.yml has ${jobs.length} jobs in environment ${env}, expected 1`);
            continue;
        }
        const [id, job] = jobs[0];
        if (!job.permissions || job.permissions['id-token'] !== 'write')
            errors.push(`infra.yml job ${id}: no id-token: write (OIDC)`);
        const uses = (job.steps || []).map((s) => s.uses).filter(Boolean);
        const act = uses.map((u) => actions[u]).find(Boolean);
        const all = JSON.stringify(job) + JSON.stringify(act || {});
        if (!/azure\/login@/.test(all)) errors.push(`infra.yml job ${id}: no azure/login`);
        const wi = all.indexOf('what-if'), dep = all.indexOf('deployment group create');
        if (wi < 0 || dep < 0 || wi > dep) errors.push(`infra.yml job ${id}: no what-if before the deployment`);
        const inEnv = (job.steps || []).some((s) => s.with && s.with.environment === env);
        if (act && !inEnv) errors.push(`infra.yml job ${id}: deploys another environment's parameters`);
        if (act && !JSON.stringify(act).includes('infra/params/${{ inputs.environment }}.bicepparam'))
            errors.push(`action of job ${id} does not deploy infra/params/<env>.bicepparam`);
    }
}

if (errors.length) {
    for (const e of errors) console.error(`INCONSISTENT ${e}`);
    process.exit(1);
}
console.log(`workflows consistent: ${Object.keys(workflows).join(', ')}; environments ${envs.join(', ')}`);
