/* Placeholder: filled in by the numbers issue. */
#include "api.h"

void lines_routes(void)
{
}
