int sum_scaled(int k);
