import type {RegopsConfig} from '../config/config.js'
import {UsageError} from '../errors.js'
import {openDatabase, type Db} from './db.js'

/** The configured database, or a usage error that says where to configure it. */
export function openConfiguredDatabase(config: RegopsConfig, applicationName = 'regops', max?: number): Db {
  if (!config.database)
    throw new UsageError(
      'no database configured: set database.url in the config, DATABASE_URL, the PG* variables (PGHOST, PGDATABASE…), or --database-url',
    )
  return openDatabase(config.database.url, {applicationName, max})
}
