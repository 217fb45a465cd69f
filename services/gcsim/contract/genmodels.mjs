// genmodels.mjs exports, from the official Genesys Cloud JavaScript SDK
// (purecloud-platform-client-v2, pinned in package-lock.json), what a
// response check needs: for every operation of the Swagger subset
// (pkg/apispec/genesys-openapi-subset.json) the SDK method and the model it
// returns, for the notification topics orgsync subscribes to the model of
// their body, and every model reachable from those, each property with its
// type and whether it is required. The result is pkg/apispec/sdkmodels.json,
// committed; pkg/apispec validates against it (one check, used by the
// contract test and by every spec Recorder).
//
//   node genmodels.mjs          rewrite ../../../pkg/apispec/sdkmodels.json
//   node genmodels.mjs --check  exit 1 when the committed file is stale
//
// Type grammar of the output: string | number | boolean | object (any JSON
// value) | <ModelName> | T[] (array of T) | {T} (object with T values).
import { readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const sdkDir = join(here, 'node_modules', 'purecloud-platform-client-v2');
const outFile = join(here, '..', '..', '..', 'pkg', 'apispec', 'sdkmodels.json');
const subsetFile = join(here, '..', '..', '..', 'pkg', 'apispec', 'genesys-openapi-subset.json');

// Topic templates orgsync subscribes to, with the SDK model of their body.
const topics = { 'v2.audits.entitytype.{type}.entityid.{id}': 'AuditTopicAuditLogMessage' };

function fail(msg) {
	console.error('genmodels: ' + msg);
	process.exit(2);
}

// convert turns a TypeScript type of index.d.ts into the output grammar.
function convert(ts, where) {
	ts = ts.trim();
	let m;
	if (['string', 'number', 'boolean', 'object', 'any'].includes(ts)) return ts === 'any' ? 'object' : ts;
	if ((m = /^Models\.(\w+)$/.exec(ts))) return m[1];
	if ((m = /^Array<(.*)>$/.exec(ts))) return convert(m[1], where) + '[]';
	if ((m = /^\{ \[key: string\]: (.*); \}$/.exec(ts))) return '{' + convert(m[1], where) + '}';
	if ((m = /^Record<string, (.*)>$/.exec(ts))) return '{' + convert(m[1], where) + '}';
	fail(`unsupported type ${JSON.stringify(ts)} in ${where}`);
}

const dts = readFileSync(join(sdkDir, 'index.d.ts'), 'utf8');
const version = JSON.parse(readFileSync(join(sdkDir, 'package.json'), 'utf8')).version;

// Models: every `export interface X {...}` inside `declare namespace Models`.
const modelsStart = dts.indexOf('declare namespace Models {');
if (modelsStart < 0) fail('index.d.ts has no Models namespace');
const models = {};
const ifaceRe = /export interface (\w+) \{ ?\n([\s\S]*?)^\t\}/gm;
ifaceRe.lastIndex = modelsStart;
for (let m; (m = ifaceRe.exec(dts)); ) {
	const props = {};
	for (const line of m[2].split('\n')) {
		if (!line.trim()) continue;
		const p = /^\s*"([^"]+)"(\??): (.*);\s*$/.exec(line);
		if (!p) fail(`unparsed line in model ${m[1]}: ${JSON.stringify(line)}`);
		props[p[1] + p[2]] = convert(p[3], `${m[1]}.${p[1]}`);
	}
	models[m[1]] = props;
}

// API methods: the d.ts class declares the return type, the JS source the
// path and HTTP method.
const returns = {}; // "UsersApi.getUser" -> type
const classRe = /declare class (\w+Api) \{([\s\S]*?)\n\}/g;
for (let m; (m = classRe.exec(dts)); ) {
	for (const d of m[2].matchAll(/^\s*(\w+)\(.*\): Promise<(.*)>;$/gm)) {
		returns[`${m[1]}.${d[1]}`] = d[2] === 'void' ? '' : convert(d[2], `${m[1]}.${d[1]}`);
	}
}
const apiDir = join(sdkDir, 'src', 'purecloud-platform-client-v2', 'api');
const sdkOps = {}; // "GET /api/v2/users/{}" -> {api, method, returns}
const norm = (p) => p.replace(/\{[^}]+\}/g, '{}');
for (const f of readdirSync(apiDir).filter((f) => f.endsWith('Api.js'))) {
	const api = f.slice(0, -3);
	const src = readFileSync(join(apiDir, f), 'utf8');
	const starts = [...src.matchAll(/^\t(\w+)\([^)]*\) \{/gm)];
	starts.forEach((m, i) => {
		const body = src.slice(m.index, i + 1 < starts.length ? starts[i + 1].index : undefined);
		const call = /callApi\(\s*'([^']+)',\s*'(\w+)'/.exec(body);
		if (!call) return; // the constructor
		const key = `${api}.${m[1]}`;
		if (!(key in returns)) fail(`${key} has no declaration in index.d.ts`);
		// Several API classes may carry the same operation (UsersApi and
		// RoutingApi both have getRoutingUserUtilization): list them all.
		const op = `${call[2]} ${norm(call[1])}`;
		if (sdkOps[op] && sdkOps[op].method === m[1] && sdkOps[op].returns === returns[key]) sdkOps[op].apis.push(api);
		else if (sdkOps[op]) fail(`${op} is ${sdkOps[op].apis[0]}.${sdkOps[op].method} and ${key}`);
		else sdkOps[op] = { apis: [api], method: m[1], returns: returns[key] };
	});
}

// The operations of the Swagger subset, under the subset's own path templates.
const subset = JSON.parse(readFileSync(subsetFile, 'utf8'));
const operations = {};
for (const [path, item] of Object.entries(subset.paths)) {
	for (const method of Object.keys(item)) {
		if (!['get', 'put', 'post', 'patch', 'delete', 'head'].includes(method)) continue;
		const key = `${method.toUpperCase()} ${path}`;
		const sdk = sdkOps[`${method.toUpperCase()} ${norm(path)}`];
		if (!sdk) fail(`the SDK has no method for ${key}`);
		operations[key] = sdk;
	}
}

// Keep the models reachable from the operations and topics.
const keep = {};
const visit = (t) => {
	const base = t.replace(/\[\]$/, '').replace(/^\{(.*)\}$/, '$1');
	if (base !== t) return visit(base);
	if (['string', 'number', 'boolean', 'object', ''].includes(t) || t in keep) return;
	if (!(t in models)) fail(`model ${t} is not declared`);
	keep[t] = models[t];
	Object.values(models[t]).forEach(visit);
};
Object.values(operations).forEach((o) => visit(o.returns));
Object.values(topics).forEach(visit);

const sorted = (o) => Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
const out = JSON.stringify({ sdk: `purecloud-platform-client-v2@${version}`, operations: sorted(operations), topics, models: sorted(keep) }, null, 1) + '\n';

if (process.argv.includes('--check')) {
	let cur = '';
	try {
		cur = readFileSync(outFile, 'utf8');
	} catch {}
	if (cur !== out) {
		console.error('genmodels: pkg/apispec/sdkmodels.json is stale: run `node services/gcsim/contract/genmodels.mjs` and commit');
		process.exit(1);
	}
} else {
	writeFileSync(outFile, out);
	console.log(`genmodels: ${Object.keys(operations).length} operations, ${Object.keys(keep).length} models -> ${outFile}`);
}
