-- The operators read Chinese: 权限管理 shows these descriptions beside the roles' Chinese names.
-- Only the seeded English text is replaced, so a description an operator edited is kept.
UPDATE roles SET description = '管理平台：用户、账号级别、权限与后台服务'
 WHERE name = 'admin' AND description = 'Manages the platform: users, levels, permissions, services';
UPDATE roles SET description = '卖家主账号：自己的店铺、子账号与业务页面'
 WHERE name = 'main_account' AND description = 'A seller: their shops, sub-accounts and business pages';
UPDATE roles SET description = '仅扫描发货'
 WHERE name = 'shipper' AND description = 'Scan shipping only';
UPDATE roles SET description = '在所属主账号的店铺中工作'
 WHERE name = 'sub_account' AND description = 'Works in the shops of their main account';
UPDATE roles SET description = '浏览器扩展使用的令牌'
 WHERE name = 'extension' AND description = 'The browser extension''s tokens';
