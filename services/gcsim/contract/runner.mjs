// runner.mjs calls gcsim through the official Genesys Cloud JavaScript SDK,
// every operation orgsync's pkg/genesys calls, with orgsync's own parameters,
// plus the notification WebSocket. It prints JSON lines for contract_test.go,
// which checks them (against the SDK models in pkg/apispec/sdkmodels.json):
//
//   {"declared": ["METHOD /path", ...]}                 first line: the cases
//   {"case", "op", "sdk", "status", "headers", "body"}  one per answer
//   {"case", "op", "sdk", "error"}                       a call that failed
//   {"ws": "heartbeat"|"audit", "topic", "message"}     WebSocket messages
//
// Configuration comes from the environment variable CONTRACT (JSON):
// url (gcsim base URL), clientId, clientSecret, userId (a licensed user of
// that org to change), email (its email), authority/externalKey (free).
import platformClient from 'purecloud-platform-client-v2';
import WebSocket from 'ws';

const cfg = JSON.parse(process.env.CONTRACT || '{}');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

// DECLARED is every operation a case below calls; contract_test.go compares
// it with pkg/genesys.Operations().
const DECLARED = [
	'GET /api/v2/authorization/divisions',
	'GET /api/v2/authorization/divisions/home',
	'GET /api/v2/authorization/roles',
	'GET /api/v2/authorization/subjects/{subjectId}',
	'POST /api/v2/authorization/subjects/{subjectId}/bulkadd',
	'POST /api/v2/authorization/subjects/{subjectId}/bulkremove',
	'GET /api/v2/integrations',
	'GET /api/v2/license/definitions',
	'POST /api/v2/license/organization',
	'GET /api/v2/license/users/{userId}',
	'POST /api/v2/license/users',
	'POST /api/v2/notifications/channels',
	'GET /api/v2/notifications/channels',
	'HEAD /api/v2/notifications/channels/{channelId}',
	'GET /api/v2/notifications/channels/{channelId}/subscriptions',
	'POST /api/v2/notifications/channels/{channelId}/subscriptions',
	'PUT /api/v2/notifications/channels/{channelId}/subscriptions',
	'GET /api/v2/organizations/me',
	'GET /api/v2/organizations/limits/namespaces',
	'GET /api/v2/routing/queues',
	'GET /api/v2/routing/queues/{queueId}/members',
	'POST /api/v2/routing/queues/{queueId}/members',
	'GET /api/v2/users/{userId}/queues',
	'GET /api/v2/routing/skills',
	'POST /api/v2/routing/skills',
	'GET /api/v2/routing/languages',
	'POST /api/v2/routing/languages',
	'GET /api/v2/users/{userId}/routingskills',
	'PUT /api/v2/users/{userId}/routingskills/bulk',
	'PATCH /api/v2/users/{userId}/routingskills/bulk',
	'DELETE /api/v2/users/{userId}/routingskills/{skillId}',
	'GET /api/v2/users/{userId}/routinglanguages',
	'PATCH /api/v2/users/{userId}/routinglanguages/bulk',
	'DELETE /api/v2/users/{userId}/routinglanguages/{languageId}',
	'GET /api/v2/routing/users/{userId}/utilization',
	'PUT /api/v2/routing/users/{userId}/utilization',
	'GET /api/v2/routing/utilization',
	'GET /api/v2/teams',
	'POST /api/v2/teams',
	'GET /api/v2/teams/{teamId}/members',
	'POST /api/v2/teams/{teamId}/members',
	'DELETE /api/v2/teams/{teamId}/members',
	'GET /api/v2/telephony/providers/edges/didpools',
	'GET /api/v2/telephony/providers/edges/didpools/dids',
	'GET /api/v2/users/{userId}',
	'POST /api/v2/users',
	'PATCH /api/v2/users/{userId}',
	'POST /api/v2/users/search',
	'GET /api/v2/users/externalid/{authorityName}/{externalKey}',
	'POST /api/v2/users/{userId}/externalid',
	'GET /api/v2/users/{userId}/externalid',
	'GET /api/v2/users',
	'DELETE /api/v2/users/{userId}',
];

if (process.argv.includes('--list')) {
	out({ declared: DECLARED });
	process.exit(0);
}
out({ declared: DECLARED });

const client = platformClient.ApiClient.instance;
const base = new URL(cfg.url);
client.setGateway({ host: base.hostname, protocol: base.protocol.replace(':', ''), port: Number(base.port) });
client.setReturnExtendedResponses(true);

const apis = {
	users: new platformClient.UsersApi(),
	routing: new platformClient.RoutingApi(),
	teams: new platformClient.TeamsApi(),
	license: new platformClient.LicenseApi(),
	authorization: new platformClient.AuthorizationApi(),
	telephony: new platformClient.TelephonyProvidersEdgeApi(),
	notifications: new platformClient.NotificationsApi(),
	integrations: new platformClient.IntegrationsApi(),
	organization: new platformClient.OrganizationApi(),
};

// call runs one SDK method as case name for operation op and returns the
// answer's body (undefined when the call failed; the failure is reported).
async function call(name, op, api, method, ...args) {
	const sdk = `${api.constructor.name}.${method}`;
	try {
		const res = await api[method](...args);
		const headers = {};
		for (const h of ['inin-ratelimit-count', 'inin-ratelimit-allowed', 'inin-ratelimit-reset']) headers[h] = res.headers[h];
		out({ case: name, op, sdk, status: res.status, headers, body: res.body === '' ? null : res.body });
		return res.body;
	} catch (e) {
		const status = e && e.status;
		out({ case: name, op, sdk, status, error: status ? JSON.stringify(e.body) : String((e && e.stack) || e) });
		return undefined;
	}
}

// orgsync pages every listing with pageSize 100 from pageNumber 1
// (pkg/genesys paging.go); cursor listings (teams) with pageSize and after.
const page = { pageSize: 100, pageNumber: 1 };
const U = apis.users, R = apis.routing, T = apis.teams, L = apis.license, A = apis.authorization;

async function main() {
	await client.loginClientCredentialsGrant(cfg.clientId, cfg.clientSecret);
	const uid = cfg.userId;

	// Organization, divisions, roles, integrations, limits.
	await call('organization', 'GET /api/v2/organizations/me', apis.organization, 'getOrganizationsMe');
	await call('limit namespaces', 'GET /api/v2/organizations/limits/namespaces', apis.organization, 'getOrganizationsLimitsNamespaces', page);
	const home = await call('home division', 'GET /api/v2/authorization/divisions/home', A, 'getAuthorizationDivisionsHome');
	await call('divisions', 'GET /api/v2/authorization/divisions', A, 'getAuthorizationDivisions', page);
	const roles = await call('roles by name', 'GET /api/v2/authorization/roles', A, 'getAuthorizationRoles', { ...page, name: 'Agent' });
	await call('integrations', 'GET /api/v2/integrations', apis.integrations, 'getIntegrations', page);

	// Users: read, list by id, search by email, create, patch, external ids.
	const expand = ['skills', 'languages', 'team', 'authorization'];
	const user = await call('user with expands', 'GET /api/v2/users/{userId}', U, 'getUser', uid, { expand });
	await call('users by id', 'GET /api/v2/users', U, 'getUsers', { ...page, id: [uid], state: 'any', expand });
	await call('search by emails', 'POST /api/v2/users/search', U, 'postUsersSearch', {
		pageSize: 100, pageNumber: 1, expand,
		query: [{ type: 'EXACT', fields: ['email'], values: [cfg.email] }],
	});
	const created = await call('create user', 'POST /api/v2/users', U, 'postUsers', {
		name: 'Contract Agent', email: 'contract.agent@contract.example', divisionId: home.id, title: 'Agent', department: 'Contract',
	});
	await call('patch user', 'PATCH /api/v2/users/{userId}', U, 'patchUser', uid, { title: 'Senior Agent', version: user.version });
	await call('add external id', 'POST /api/v2/users/{userId}/externalid', U, 'postUserExternalid', uid,
		{ authorityName: cfg.authority, externalKey: cfg.externalKey });
	await call('external ids', 'GET /api/v2/users/{userId}/externalid', U, 'getUserExternalid', uid);
	await call('user by external id', 'GET /api/v2/users/externalid/{authorityName}/{externalKey}', U, 'getUsersExternalidAuthorityNameExternalKey',
		cfg.authority, cfg.externalKey, { expand });

	// Skills and languages: lookup by name, create, a user's lists and bulk changes.
	const skills = await call('skills by name', 'GET /api/v2/routing/skills', R, 'getRoutingSkills', { ...page, name: 'Billing' });
	const skill = await call('create skill', 'POST /api/v2/routing/skills', R, 'postRoutingSkills', { name: 'Contract Skill' });
	await call('languages by name', 'GET /api/v2/routing/languages', R, 'getRoutingLanguages', { ...page, name: 'English' });
	const lang = await call('create language', 'POST /api/v2/routing/languages', R, 'postRoutingLanguages', { name: 'Contract Language' });
	await call('user skills', 'GET /api/v2/users/{userId}/routingskills', U, 'getUserRoutingskills', uid, page);
	const held = (skills.entities || []).map((s) => ({ id: s.id, proficiency: 3 }));
	await call('replace user skills', 'PUT /api/v2/users/{userId}/routingskills/bulk', U, 'putUserRoutingskillsBulk', uid, held);
	await call('add user skills', 'PATCH /api/v2/users/{userId}/routingskills/bulk', U, 'patchUserRoutingskillsBulk', uid, [{ id: skill.id, proficiency: 4 }]);
	await call('remove user skill', 'DELETE /api/v2/users/{userId}/routingskills/{skillId}', U, 'deleteUserRoutingskill', uid, skill.id);
	await call('user languages', 'GET /api/v2/users/{userId}/routinglanguages', U, 'getUserRoutinglanguages', uid, page);
	await call('add user languages', 'PATCH /api/v2/users/{userId}/routinglanguages/bulk', U, 'patchUserRoutinglanguagesBulk', uid, [{ id: lang.id, proficiency: 2 }]);
	await call('remove user language', 'DELETE /api/v2/users/{userId}/routinglanguages/{languageId}', U, 'deleteUserRoutinglanguage', uid, lang.id);

	// Utilization.
	await call('org utilization', 'GET /api/v2/routing/utilization', R, 'getRoutingUtilization');
	await call('user utilization', 'GET /api/v2/routing/users/{userId}/utilization', R, 'getRoutingUserUtilization', uid);
	await call('set user utilization', 'PUT /api/v2/routing/users/{userId}/utilization', R, 'putRoutingUserUtilization', uid,
		{ utilization: { call: { maximumCapacity: 1, interruptableMediaTypes: [] }, chat: { maximumCapacity: 3, interruptableMediaTypes: ['email'] } } });

	// Queues: exact name lookup, members, a user's queues, member changes.
	const queues = await call('queue by name', 'GET /api/v2/routing/queues', R, 'getRoutingQueues', { ...page, name: 'Support Queue' });
	const queue = queues.entities[0];
	await call('queue members', 'GET /api/v2/routing/queues/{queueId}/members', R, 'getRoutingQueueMembers', queue.id, page);
	await call('user queues', 'GET /api/v2/users/{userId}/queues', U, 'getUserQueues', uid, page);
	await call('add queue members', 'POST /api/v2/routing/queues/{queueId}/members', R, 'postRoutingQueueMembers', queue.id, [{ id: uid }]);
	await call('remove queue members', 'POST /api/v2/routing/queues/{queueId}/members', R, 'postRoutingQueueMembers', queue.id, [{ id: uid }], { delete: true });

	// Teams (cursor listing).
	const team = await call('create team', 'POST /api/v2/teams', T, 'postTeams', { name: 'Contract Team', description: 'contract', division: { id: home.id } });
	await call('teams by name', 'GET /api/v2/teams', T, 'getTeams', { pageSize: 100, name: 'Contract Team' });
	await call('add team members', 'POST /api/v2/teams/{teamId}/members', T, 'postTeamMembers', team.id, { memberIds: [uid] });
	await call('team members', 'GET /api/v2/teams/{teamId}/members', T, 'getTeamMembers', team.id, { pageSize: 100 });
	await call('remove team members', 'DELETE /api/v2/teams/{teamId}/members', T, 'deleteTeamMembers', team.id, uid);

	// Licenses.
	const defs = await call('license definitions', 'GET /api/v2/license/definitions', L, 'getLicenseDefinitions');
	await call('user licenses', 'GET /api/v2/license/users/{userId}', L, 'getLicenseUser', uid);
	await call('users licenses', 'POST /api/v2/license/users', L, 'postLicenseUsers', { body: [uid, created.id] });
	await call('assign licenses', 'POST /api/v2/license/organization', L, 'postLicenseOrganization',
		{ body: { assignments: [{ licenseId: defs[0].id, userIdsAdd: [created.id], userIdsRemove: [] }] } });

	// Role grants.
	await call('subject', 'GET /api/v2/authorization/subjects/{subjectId}', A, 'getAuthorizationSubject', uid);
	const grants = { grants: [{ roleId: roles.entities[0].id, divisionId: home.id }] };
	await call('grant roles', 'POST /api/v2/authorization/subjects/{subjectId}/bulkadd', A, 'postAuthorizationSubjectBulkadd', created.id, grants);
	await call('revoke roles', 'POST /api/v2/authorization/subjects/{subjectId}/bulkremove', A, 'postAuthorizationSubjectBulkremove', created.id, grants);
	// The created user's last use: the provisioner deletes a user it created by mistake.
	await call('delete user', 'DELETE /api/v2/users/{userId}', U, 'deleteUser', created.id);

	// Telephony: DID pools and their free numbers.
	await call('did pools', 'GET /api/v2/telephony/providers/edges/didpools', apis.telephony, 'getTelephonyProvidersEdgesDidpools', page);
	await call('unassigned dids', 'GET /api/v2/telephony/providers/edges/didpools/dids', apis.telephony, 'getTelephonyProvidersEdgesDidpoolsDids', 'UNASSIGNED', page);

	// Notifications: channel, subscriptions, the WebSocket.
	const N = apis.notifications;
	const channel = await call('create channel', 'POST /api/v2/notifications/channels', N, 'postNotificationsChannels');
	await call('channels', 'GET /api/v2/notifications/channels', N, 'getNotificationsChannels');
	await call('channel exists', 'HEAD /api/v2/notifications/channels/{channelId}', N, 'headNotificationsChannel', channel.id);
	const topic = `v2.audits.entitytype.USER.entityid.${uid}`;
	await call('subscribe', 'POST /api/v2/notifications/channels/{channelId}/subscriptions', N, 'postNotificationsChannelSubscriptions', channel.id, [{ id: topic }]);
	await call('replace subscriptions', 'PUT /api/v2/notifications/channels/{channelId}/subscriptions', N, 'putNotificationsChannelSubscriptions', channel.id, [{ id: topic }]);
	await call('subscriptions', 'GET /api/v2/notifications/channels/{channelId}/subscriptions', N, 'getNotificationsChannelSubscriptions', channel.id);
	await websocket(channel.connectUri, topic, () =>
		call('change for audit', 'PATCH /api/v2/users/{userId}/routingskills/bulk', U, 'patchUserRoutingskillsBulk', uid, [{ id: skill.id, proficiency: 5 }]));
}

// websocket connects to the channel, waits for a heartbeat, then makes a
// change with change() and waits for its audit event on topic.
function websocket(uri, topic, change) {
	return new Promise((resolve, reject) => {
		const ws = new WebSocket(uri);
		const timer = setTimeout(() => { ws.terminate(); reject(new Error(`websocket ${uri}: no heartbeat and audit event within 20s`)); }, 20000);
		let changed = false;
		ws.on('error', (e) => { clearTimeout(timer); reject(e); });
		ws.on('message', async (data) => {
			const msg = JSON.parse(data.toString());
			if (msg.topicName === 'channel.metadata' && !changed) {
				out({ ws: 'heartbeat', topic: msg.topicName, message: msg });
				changed = true;
				await change();
			} else if (msg.topicName === topic) {
				out({ ws: 'audit', topic: msg.topicName, message: msg });
				clearTimeout(timer);
				ws.close();
				resolve();
			}
		});
	});
}

main().then(() => process.exit(0), (e) => {
	out({ fatal: String((e && e.stack) || JSON.stringify(e)) });
	process.exit(1);
});
