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

/*
 * Holds: a refill holds each number it pushes with the score fill_ms +
 * HOPPER_MAX_AGE_MS + 0.5 (the entry's own hold; the half marks a hold, as
 * locks and graces are whole milliseconds). The pop dispatches an entry when
 * its number is free (no score, or an expired one) or still holds exactly
 * that entry's hold: a number another hopper took over, a result released,
 * or a flush freed and someone locked since, is dropped.
 */

/* One ZMSCORE and one ZADD per LPOP, not a call per number; an id seen twice is taken once. */
const char HOPPER_POP_LUA[] =
    "local n, now = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local until_ms, age = now + tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local ids, out, seen, dropped = {}, {}, {}, 0\n"
    "while #ids < n do\n"
    "  local got = redis.call('LPOP', KEYS[1], n - #ids)\n"
    "  if not got then break end\n"
    "  local cand, phones, holds = {}, {}, {}\n"
    "  for _, e in ipairs(got) do\n"
    "    local id, phone, t = string.match(e, '^(%d+):([^:]*):(%d+)$')\n"
    "    local hold = id and tonumber(t) + age + 0.5\n"
    "    if id and not seen[id] and hold > now then\n"
    "      seen[id] = true\n"
    "      cand[#cand + 1] = id\n"
    "      phones[#cand], holds[#cand] = phone, hold\n"
    "    else\n"
    "      dropped = dropped + 1\n"
    "    end\n"
    "  end\n"
    "  if #cand > 0 then\n"
    "    local scores, z = redis.call('ZMSCORE', KEYS[2], unpack(cand)), {}\n"
    "    for i, id in ipairs(cand) do\n"
    "      local s = scores[i] and tonumber(scores[i])\n"
    "      if not s or s <= now or s == holds[i] then\n"
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
    "local m = redis.call('HMGET', KEYS[3], 'cursor', 'after', 'at', 'chase', 'steal')\n"
    "return {1, redis.call('GET', KEYS[2]) or '0', m[1] or '0', m[2], m[3], m[4], m[5], redis.call('LLEN', KEYS[5])}\n";

/* Lock checks in chunks of 1000 (one ZMSCORE each), pushes and holds in chunks of 1000. A number
 * is free when it has no score or an expired one, or (ARGV[8] == '1': the walk went round, or
 * saw the whole pool) when another hopper merely holds it. Only the last part of a refill ends it (ARGV[9] == '1'). */
const char HOPPER_FILL_LUA[] =
    "if ARGV[9] == '1' then redis.call('DEL', KEYS[5]) end\n"
    "if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[1] then return -1 end\n"
    "local now, steal, pushed = tonumber(ARGV[2]), ARGV[8] == '1', 0\n"
    "local hold = tonumber(ARGV[3]) + tonumber(ARGV[10]) + 0.5\n"
    "local m = (#ARGV - 10) / 2\n"
    "for i = 11, 10 + m, 1000 do\n"
    "  local last = math.min(i + 999, 10 + m)\n"
    "  local scores, batch, z = redis.call('ZMSCORE', KEYS[2], unpack(ARGV, i, last)), {}, {}\n"
    "  for j = i, last do\n"
    "    local s = scores[j - i + 1] and tonumber(scores[j - i + 1])\n"
    "    if not s or s <= now or (steal and s % 1 ~= 0) then\n"
    "      batch[#batch + 1] = ARGV[j + m]\n"
    "      z[#z + 1] = hold\n"
    "      z[#z + 1] = ARGV[j]\n"
    "    end\n"
    "  end\n"
    "  if #batch > 0 then\n"
    "    redis.call('RPUSH', KEYS[1], unpack(batch))\n"
    "    redis.call('ZADD', KEYS[2], unpack(z))\n"
    "  end\n"
    "  pushed = pushed + #batch\n"
    "end\n"
    "redis.call('SADD', KEYS[7], ARGV[6])\n"
    "if ARGV[9] == '1' then\n"
    "  redis.call('HSET', KEYS[4], 'cursor', ARGV[4], 'after', redis.call('LLEN', KEYS[1]), 'at', ARGV[2])\n"
    "  if ARGV[5] == '1' and redis.call('LLEN', KEYS[1]) == 0 then redis.call('SET', KEYS[6], '1', 'PX', ARGV[7]) end\n"
    "end\n"
    "return pushed\n";

/* Keys are built in the script from the company ids (a single Redis, not a cluster). Each list's
 * entries still holding their number give it back (ZREM), read in chunks of 1000. */
const char HOPPER_FLUSH_LUA[] =
    "local cids\n"
    "if ARGV[1] == '' then cids = redis.call('SMEMBERS', KEYS[2])\n"
    "elseif redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then cids = {ARGV[1]}\n"
    "else return 0 end\n"
    "redis.call('INCR', KEYS[1])\n"
    "local age = tonumber(ARGV[2])\n"
    "for _, c in ipairs(cids) do\n"
    "  local list = 'dialer:hopper:' .. c\n"
    "  for from = 0, redis.call('LLEN', list) - 1, 1000 do\n"
    "    local ids, holds, free = {}, {}, {}\n"
    "    for _, e in ipairs(redis.call('LRANGE', list, from, from + 999)) do\n"
    "      local id, t = string.match(e, '^(%d+):[^:]*:(%d+)$')\n"
    "      if id then ids[#ids + 1], holds[#ids + 1] = id, tonumber(t) + age + 0.5 end\n"
    "    end\n"
    "    if #ids > 0 then\n"
    "      local scores = redis.call('ZMSCORE', KEYS[3], unpack(ids))\n"
    "      for i, id in ipairs(ids) do\n"
    "        if scores[i] and tonumber(scores[i]) == holds[i] then free[#free + 1] = id end\n"
    "      end\n"
    "      if #free > 0 then redis.call('ZREM', KEYS[3], unpack(free)) end\n"
    "    end\n"
    "  end\n"
    "  redis.call('DEL', list, list .. ':meta', list .. ':dry')\n"
    "  redis.call('SREM', KEYS[2], c)\n"
    "end\n"
    "return #cids\n";

/* Lowers each lock to the grace, and sets the grace on a number a hopper merely holds. */
static const char HOPPER_RELEASE_LUA[] =
    "local g, z = tonumber(ARGV[1]), {}\n"
    "local scores = redis.call('ZMSCORE', KEYS[1], unpack(ARGV, 2))\n"
    "for i = 2, #ARGV do\n"
    "  local s = scores[i - 1] and tonumber(scores[i - 1])\n"
    "  if s and (s > g or s % 1 ~= 0) then z[#z + 1] = g; z[#z + 1] = ARGV[i] end\n"
    "end\n"
    "if #z > 0 then redis.call('ZADD', KEYS[1], unpack(z)) end\n"
    "return #z / 2\n";

/* COMPAT §3.3 step 4 (ACTIVE, not locked in the database, outside the cooldown,
 * never dialed by this company since its last reset), oldest first from the
 * cursor, then from the lowest id. Each NOT EXISTS repeats the id range (OP
 * $4): the planner makes them merge anti-joins, and without the range their
 * index scans started at the lowest id, so a refill read every lock and every
 * row of the company's number_state below the cursor (a refill of 10,000 with
 * 700,000 locks: 78 ms, with the range 12 ms). */
#define HOPPER_CANDIDATE(OP)                                                                                \
	"SELECT n.id, n.phone_number FROM numbers n WHERE n.global_status = 'ACTIVE' AND n.id " OP          \
	" $4::bigint AND NOT EXISTS (SELECT 1 FROM number_locks l WHERE l.number_id = n.id"                 \
	" AND l.number_id " OP " $4::bigint)"                                                               \
	" AND (n.last_called_at IS NULL OR n.last_called_at < now() - make_interval(days => $3::int))"      \
	" AND NOT EXISTS (SELECT 1 FROM number_state s WHERE s.company_id = $1::int AND s.number_id = n.id" \
	" AND s.number_id " OP " $4::bigint)"

#define HOPPER_HI HOPPER_CANDIDATE(">") " ORDER BY n.id LIMIT $2::int"
#define HOPPER_LO HOPPER_CANDIDATE("<=") " ORDER BY n.id LIMIT ($2::int - (SELECT count(*) FROM hi))"

const char HOPPER_CANDIDATES_SQL[] = "WITH hi AS (" HOPPER_HI "), lo AS (" HOPPER_LO ")"
                                     " SELECT id, phone_number, w FROM (SELECT id, phone_number, false AS w FROM hi"
                                     "  UNION ALL SELECT id, phone_number, true FROM lo) c ORDER BY w, id";

int hopper_release_sync(redisContext *rc, const long long *ids, int n)
{
	enum { CHUNK = 5000 };
	char until[24];
	snprintf(until, sizeof(until), "%lld", (long long)(util_wall_us() / 1000) + HOPPER_GRACE_MS);
	for (int off = 0; off < n; off += CHUNK) {
		int m = n - off < CHUNK ? n - off : CHUNK;
		const char **argv = xmalloc((size_t)(m + 5) * sizeof(*argv));
		char(*num)[24] = xmalloc((size_t)m * sizeof(*num));
		int argc = 0;
		argv[argc++] = "EVAL";
		argv[argc++] = HOPPER_RELEASE_LUA;
		argv[argc++] = "1";
		argv[argc++] = HOPPER_LOCKS;
		argv[argc++] = until;
		for (int i = 0; i < m; i++) {
			snprintf(num[i], sizeof(num[i]), "%lld", ids[off + i]);
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

void hopper_flush_argv(struct hopper_flush_args *a, long company_id)
{
	a->cid[0] = '\0';
	if (company_id > 0)
		snprintf(a->cid, sizeof(a->cid), "%ld", company_id);
	snprintf(a->age, sizeof(a->age), "%d", HOPPER_MAX_AGE_MS);
	const char *argv[HOPPER_FLUSH_ARGC] = {"EVAL",     HOPPER_FLUSH_LUA, "3",    HOPPER_EPOCH,
	                                       HOPPER_SET, HOPPER_LOCKS,     a->cid, a->age};
	memcpy(a->argv, argv, sizeof(argv));
}

int hopper_flush_sync(redisContext *rc, long company_id)
{
	struct hopper_flush_args a;
	hopper_flush_argv(&a, company_id);
	redisReply *r = redisCommandArgv(rc, HOPPER_FLUSH_ARGC, a.argv, NULL);
	int ok = r && r->type == REDIS_REPLY_INTEGER;
	if (!ok)
		log_warn("event=hopper_flush_failed company_id=%ld error=\"%s\"", company_id,
		         r && r->str ? r->str : rc->errstr);
	freeReplyObject(r);
	return ok ? 0 : -1;
}
