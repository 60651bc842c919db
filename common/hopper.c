/*
 * The hopper's scripts and statements (hopper.h). Entries are "id:phone:fill_ms"
 * (fill_ms: when the refill started reading the database).
 */
#include "hopper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* One ZMSCORE and one ZADD per LPOP, not a call per number; an id seen twice (a wrapped walk
 * pushed it again) is taken once. */
const char HOPPER_POP_LUA[] =
    "local n, now = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local until_ms, oldest = now + tonumber(ARGV[3]), now - tonumber(ARGV[4])\n"
    "local ids, out, seen, dropped = {}, {}, {}, 0\n"
    "while #ids < n do\n"
    "  local got = redis.call('LPOP', KEYS[1], n - #ids)\n"
    "  if not got then break end\n"
    "  local cand, phones = {}, {}\n"
    "  for _, e in ipairs(got) do\n"
    "    local id, phone, t = string.match(e, '^(%d+):([^:]*):(%d+)$')\n"
    "    if id and not seen[id] and tonumber(t) >= oldest then\n"
    "      seen[id] = true\n"
    "      cand[#cand + 1] = id\n"
    "      phones[#cand] = phone\n"
    "    else\n"
    "      dropped = dropped + 1\n"
    "    end\n"
    "  end\n"
    "  if #cand > 0 then\n"
    "    local scores, z = redis.call('ZMSCORE', KEYS[2], unpack(cand)), {}\n"
    "    for i, id in ipairs(cand) do\n"
    "      if not scores[i] or tonumber(scores[i]) <= now then\n"
    "        z[#z + 1] = until_ms\n"
    "        z[#z + 1] = id\n"
    "        ids[#ids + 1] = id\n"
    "        out[#out + 1] = id\n"
    "        out[#out + 1] = phones[i]\n"
    "      else\n"
    "        dropped = dropped + 1\n"
    "      end\n"
    "    end\n"
    "    if #z > 0 then redis.call('ZADD', KEYS[2], unpack(z)) end\n"
    "  end\n"
    "end\n"
    "if ARGV[8] == '1' or #ids == n then\n"
    "  local all = table.concat(ids, ',')\n"
    "  if ARGV[9] ~= '' then all = (all == '' and ARGV[9]) or (ARGV[9] .. ',' .. all) end\n"
    "  redis.call('XADD', KEYS[3], '*', 'id', ARGV[5], 'company', ARGV[6], 'requested', ARGV[7],\n"
    "             'returned', #ids + tonumber(ARGV[10]), 'at', ARGV[2], 'ids', all)\n"
    "end\n"
    "return {redis.call('LLEN', KEYS[1]), redis.call('EXISTS', KEYS[4]), dropped, out}\n";

const char HOPPER_BEGIN_LUA[] =
    "if redis.call('EXISTS', KEYS[4]) == 1 then return {0} end\n"
    "if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return {0} end\n"
    "return {1, redis.call('GET', KEYS[2]) or '0', redis.call('HGET', KEYS[3], 'cursor') or '0'}\n";

/* Lock checks in chunks of 1000 (one ZMSCORE each), pushes in chunks of 1000. */
const char HOPPER_FILL_LUA[] =
    "redis.call('DEL', KEYS[5])\n"
    "if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[1] then return -1 end\n"
    "local now, pushed = tonumber(ARGV[2]), 0\n"
    "for i = 8, #ARGV, 1000 do\n"
    "  local ids, last = {}, math.min(i + 999, #ARGV)\n"
    "  for j = i, last do ids[#ids + 1] = string.match(ARGV[j], '^(%d+):') end\n"
    "  local scores, batch = redis.call('ZMSCORE', KEYS[2], unpack(ids)), {}\n"
    "  for j = i, last do\n"
    "    local s = scores[j - i + 1]\n"
    "    if not s or tonumber(s) <= now then batch[#batch + 1] = ARGV[j] .. ':' .. ARGV[3] end\n"
    "  end\n"
    "  if #batch > 0 then redis.call('RPUSH', KEYS[1], unpack(batch)) end\n"
    "  pushed = pushed + #batch\n"
    "end\n"
    "redis.call('HSET', KEYS[4], 'cursor', ARGV[4])\n"
    "redis.call('SADD', KEYS[7], ARGV[6])\n"
    "if pushed == 0 and ARGV[5] == '1' then redis.call('SET', KEYS[6], '1', 'PX', ARGV[7]) end\n"
    "return pushed\n";

/* Keys are built in the script from the company ids (a single Redis, not a cluster). */
const char HOPPER_FLUSH_LUA[] =
    "local cids\n"
    "if ARGV[1] == '' then cids = redis.call('SMEMBERS', KEYS[2])\n"
    "elseif redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then cids = {ARGV[1]}\n"
    "else return 0 end\n"
    "redis.call('INCR', KEYS[1])\n"
    "for _, c in ipairs(cids) do\n"
    "  redis.call('DEL', 'dialer:hopper:' .. c, 'dialer:hopper:' .. c .. ':meta', 'dialer:hopper:' .. c .. ':dry')\n"
    "  redis.call('SREM', KEYS[2], c)\n"
    "end\n"
    "return #cids\n";

/* COMPAT §3.3 step 4 (ACTIVE, not locked in the database, outside the cooldown,
 * never dialed by this company since its last reset), oldest first from the
 * cursor, then from the lowest id. */
#define HOPPER_CANDIDATE                                                                               \
	"SELECT n.id, n.phone_number FROM numbers n WHERE n.global_status = 'ACTIVE'"                  \
	" AND n.assigned_at IS NULL"                                                                   \
	" AND (n.last_called_at IS NULL OR n.last_called_at < now() - make_interval(days => $3::int))" \
	" AND NOT EXISTS (SELECT 1 FROM number_state s WHERE s.company_id = $1::int AND s.number_id = n.id)"

const char HOPPER_CANDIDATES_SQL[] =
    "WITH hi AS (" HOPPER_CANDIDATE " AND n.id > $4::bigint ORDER BY n.id LIMIT $2::int),"
    " lo AS (" HOPPER_CANDIDATE " AND n.id <= $4::bigint ORDER BY n.id"
    "  LIMIT ($2::int - (SELECT count(*) FROM hi)))"
    " SELECT id, phone_number, w FROM (SELECT id, phone_number, false AS w FROM hi"
    "  UNION ALL SELECT id, phone_number, true FROM lo) c ORDER BY w, id";

int hopper_release_sync(redisContext *rc, const long long *ids, int n)
{
	enum { CHUNK = 5000 };
	char until[24];
	snprintf(until, sizeof(until), "%lld", (long long)(util_wall_us() / 1000) + HOPPER_GRACE_MS);
	for (int off = 0; off < n; off += CHUNK) {
		int m = n - off < CHUNK ? n - off : CHUNK;
		const char **argv = xmalloc((size_t)(2 * m + 4) * sizeof(*argv));
		char(*num)[24] = xmalloc((size_t)m * sizeof(*num));
		int argc = 0;
		argv[argc++] = "ZADD";
		argv[argc++] = HOPPER_LOCKS;
		argv[argc++] = "XX";
		argv[argc++] = "LT";
		for (int i = 0; i < m; i++) {
			snprintf(num[i], sizeof(num[i]), "%lld", ids[off + i]);
			argv[argc++] = until;
			argv[argc++] = num[i];
		}
		redisReply *r = redisCommandArgv(rc, argc, argv, NULL);
		int ok = r && r->type == REDIS_REPLY_INTEGER;
		if (!ok)
			log_warn("event=lock_release_failed count=%d error=\"%s\"", m,
			         r && r->str ? r->str : rc->errstr);
		freeReplyObject(r);
		free(num);
		free(argv);
		if (!ok)
			return -1;
	}
	return 0;
}

int hopper_flush_sync(redisContext *rc, long company_id)
{
	char cid[24] = "";
	if (company_id > 0)
		snprintf(cid, sizeof(cid), "%ld", company_id);
	redisReply *r = redisCommand(rc, "EVAL %s 2 %s %s %s", HOPPER_FLUSH_LUA, HOPPER_EPOCH, HOPPER_SET, cid);
	int ok = r && r->type == REDIS_REPLY_INTEGER;
	if (!ok)
		log_warn("event=hopper_flush_failed company_id=%ld error=\"%s\"", company_id,
		         r && r->str ? r->str : rc->errstr);
	freeReplyObject(r);
	return ok ? 0 : -1;
}
