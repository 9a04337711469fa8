-- The operators read Chinese: 后台服务 shows the built-in jobs' descriptions. Rows seeded with the
-- earlier English text get the Chinese one the code now seeds; an operator's own text is kept.
UPDATE sync_services SET service_description = '系统健康检查：检测数据库、Redis、数据库迁移和 worker 心跳，并记录结果'
 WHERE service_key = 'ef.core.system_health_check'
   AND service_description = 'Probe the database, Redis, migrations and the worker heartbeat; record the result';
UPDATE sync_services SET service_description = '数据清理：删除已完成的任务、旧的运行日志、健康检查记录和失效心跳；归档 180 天前的审计日志'
 WHERE service_key = 'ef.core.cleanup'
   AND service_description = 'Delete finished jobs, old run logs, health records and stale heartbeats; archive audit rows older than 180 days';
UPDATE sync_services SET service_description = '数据库备份：pg_dump（custom 格式）到 EF__BACKUP_DIR，保留 EF__BACKUP_RETENTION_DAYS 天'
 WHERE service_key = 'ef.system.database_backup'
   AND service_description = 'pg_dump the database (custom format) into EF__BACKUP_DIR, keeping EF__BACKUP_RETENTION_DAYS';
