/*
 * Phone normalization (COMPAT §3.1 with SPEC §3's stricter input rule:
 * separators are dropped, any other character makes the number invalid).
 */
#include <stdio.h>
#include <string.h>

#include "phone.h"

int phone_normalize(const char *in, char out[12])
{
	char d[PHONE_INPUT_MAX + 1];
	size_t n = 0, len;
	const unsigned char *p = (const unsigned char *)in;
	out[0] = '\0';
	if (!in || (len = strlen(in)) == 0 || len > PHONE_INPUT_MAX)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned c = p[i];
		if (c >= '0' && c <= '9') {
			d[n++] = (char)c;
		} else if (c == 0xDB && i + 1 < len && p[i + 1] >= 0xB0 && p[i + 1] <= 0xB9) {
			d[n++] = (char)('0' + (p[i + 1] - 0xB0)); /* U+06F0..U+06F9 */
			i++;
		} else if (c == 0xD9 && i + 1 < len && p[i + 1] >= 0xA0 && p[i + 1] <= 0xA9) {
			d[n++] = (char)('0' + (p[i + 1] - 0xA0)); /* U+0660..U+0669 */
			i++;
		} else if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '\t') {
			continue;
		} else if (c == '+' && n == 0) {
			continue;
		} else {
			return -1;
		}
	}
	d[n] = '\0';
	const char *s = d;
	char buf[PHONE_INPUT_MAX + 2];
	if (!strncmp(s, "0098", 4)) {
		snprintf(buf, sizeof(buf), "0%s", s + 4);
	} else if (!strncmp(s, "98", 2)) {
		snprintf(buf, sizeof(buf), "0%s", s + 2);
	} else if (s[0] == '9' && n == 10) {
		snprintf(buf, sizeof(buf), "0%s", s);
	} else {
		snprintf(buf, sizeof(buf), "%s", s);
	}
	if (strlen(buf) != 11 || buf[0] != '0' || buf[1] != '9')
		return -1;
	memcpy(out, buf, 12);
	return 0;
}
