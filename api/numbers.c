/* Placeholder: filled in by the numbers issue. */
#include "api.h"

void numbers_routes(void)
{
}
