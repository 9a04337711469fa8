-- The product page's other sorts and its status counts, per shop, for shops with 100 000
-- products: without these a page sorted by price, stock, sales or title sorts the whole shop
-- (hundreds of ms), and the status tabs read every row. Each sort ends with id, as the list does.
CREATE INDEX ix_ozon_products_shop_price ON ozon_products (shop_id, price, id);
CREATE INDEX ix_ozon_products_shop_stock ON ozon_products (shop_id, stock, id);
CREATE INDEX ix_ozon_products_shop_sales ON ozon_products (shop_id, sales_count, id);
CREATE INDEX ix_ozon_products_shop_title ON ozon_products (shop_id, title, id);
-- Status tabs (count per status, out of stock, sync failed) from the index alone.
CREATE INDEX ix_ozon_products_shop_status_counts ON ozon_products (shop_id, status)
    INCLUDE (stock, sync_status);
